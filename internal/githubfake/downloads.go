package githubfake

import (
	"fmt"
	"net/http"
)

// DefaultRunnerVersion is the runner version the stand-in offers for
// download until SetRunnerVersion changes it.
const DefaultRunnerVersion = "2.321.0"

// SetRunnerVersion sets the runner version that GET …/actions/runners/downloads
// lists, as GitHub does once it publishes a runner release.
func (s *Server) SetRunnerVersion(v string) {
	a := s.actions
	a.mu.Lock()
	defer a.mu.Unlock()
	a.runnerVersion = v
}

// apiDownload is one entry of GitHub's runner downloads list.
type apiDownload struct {
	OS           string `json:"os"`
	Architecture string `json:"architecture"`
	DownloadURL  string `json:"download_url"`
	Filename     string `json:"filename"`
	SHA256       string `json:"sha256_checksum"`
}

// handleRunnerDownloads lists the runner application's packages of the
// current version, as GET /orgs/{org}/actions/runners/downloads (and the
// repository's) does: one per os and architecture.
func (s *Server) handleRunnerDownloads(w http.ResponseWriter, _ *http.Request) {
	a := s.actions
	a.mu.Lock()
	v := a.runnerVersion
	a.mu.Unlock()
	if v == "" {
		v = DefaultRunnerVersion
	}
	var out []apiDownload
	for _, p := range []struct{ os, arch, ext string }{
		{"osx", "x64", "tar.gz"}, {"osx", "arm64", "tar.gz"},
		{"linux", "x64", "tar.gz"}, {"linux", "arm", "tar.gz"}, {"linux", "arm64", "tar.gz"},
		{"win", "x64", "zip"}, {"win", "arm64", "zip"},
	} {
		name := fmt.Sprintf("actions-runner-%s-%s-%s.%s", p.os, p.arch, v, p.ext)
		out = append(out, apiDownload{
			OS: p.os, Architecture: p.arch, Filename: name,
			DownloadURL: fmt.Sprintf("https://github.com/actions/runner/releases/download/v%s/%s", v, name),
			SHA256:      fmt.Sprintf("%064x", len(name)),
		})
	}
	writeJSON(w, http.StatusOK, out)
}
