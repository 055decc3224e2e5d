// Package packaging holds no code: packaging/build-deb.sh builds the
// Debian package (`make deb`) from the files in packaging/debian, and this
// package's test builds it, runs lintian on it and, in CI, installs,
// checks, removes and purges it.
package packaging
