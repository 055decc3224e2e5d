package bustest

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"golang.org/x/crypto/bcrypt"
)

// StartSecureCluster starts an n-node cluster from the production
// template deploy/nats/node.conf and deploy/nats/routes.conf.example: TLS
// with client certificates for clients and routes (a throw-away CA made
// for the test), the user "ephemera" with a password (stored as a bcrypt
// hash), and a route password. Only the addresses, paths and secrets are
// filled in; it stops at cleanup.
func StartSecureCluster(t testing.TB, n int) *Cluster {
	t.Helper()
	c := newCluster(t, n)
	pki := NewPKI(t)
	c.PKI, c.User, c.Password, c.RoutePassword = &pki, "ephemera", Password(t), Password(t)
	// The lowest cost keeps connecting fast; production uses the default.
	hash, err := bcrypt.GenerateFromPassword([]byte(c.Password), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	node, routes := readTemplate(t, "node.conf"), readTemplate(t, "routes.conf.example")
	var urls []string
	for _, p := range c.ClusterPorts {
		urls = append(urls, fmt.Sprintf("nats-route://route:%s@127.0.0.1:%d", c.RoutePassword, p))
	}
	routesConf := fill(t, "routes.conf.example", routes, [][2]string{
		{"nats-route://route:ROUTE_PASSWORD@nats-2.example:6222", strings.Join(urls, "\n  ")},
		{"  nats-route://route:ROUTE_PASSWORD@nats-3.example:6222\n", ""},
		{`password: "ROUTE_PASSWORD"`, fmt.Sprintf("password: %q", c.RoutePassword)},
	})
	for i := range n {
		conf := fill(t, "node.conf", node, [][2]string{
			{"server_name: nats-1", fmt.Sprintf("server_name: n%d", i)},
			{"listen: 0.0.0.0:4222", fmt.Sprintf("listen: 127.0.0.1:%d", c.ports[i])},
			{"http: 127.0.0.1:8222\n", ""},
			{"/etc/nats/tls/node.pem", fmt.Sprintf("%q", pki.ServerCert)},
			{"/etc/nats/tls/node-key.pem", fmt.Sprintf("%q", pki.ServerKey)},
			{"/etc/nats/tls/ca.pem", fmt.Sprintf("%q", pki.CAFile)},
			{"BCRYPT_HASH_OF_THE_EPHEMERA_PASSWORD", string(hash)},
			{"/var/lib/nats/jetstream", fmt.Sprintf("%q", filepath.Join(c.dir, fmt.Sprint(i)))},
			{"max_file_store: 20GB", "max_file_store: 1GB"},
			{"listen: 0.0.0.0:6222", fmt.Sprintf("listen: 127.0.0.1:%d", c.ClusterPorts[i])},
		})
		c.writeConf(i, "node.conf", conf)
		c.writeConf(i, "routes.conf", routesConf)
	}
	c.start()
	return c
}

// Template is the path of a file in deploy/nats.
func Template(name string) string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "..", "deploy", "nats", name)
}

func readTemplate(t testing.TB, name string) string {
	t.Helper()
	b, err := os.ReadFile(Template(name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// fill replaces every pair's first by its second, failing when the
// template no longer holds what is replaced.
func fill(t testing.TB, name, s string, pairs [][2]string) string {
	t.Helper()
	for _, p := range pairs {
		if !strings.Contains(s, p[0]) {
			t.Fatalf("deploy/nats/%s no longer contains %q", name, p[0])
		}
		s = strings.ReplaceAll(s, p[0], p[1])
	}
	return s
}
