package compat_test

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// Tasks run sandboxed: they cannot write where a test could read, nor show
// their host process ids. The tests observe them as a user would observe
// real jobs: over the network, and from the host.

// markServer is a loopback HTTP service tasks report to with curl:
// POST {url}/mark/{name} records a mark (the body, if any, is kept as its
// value); GET {url}/has/{name} answers 200 once it was marked, else 404.
type markServer struct {
	URL string
	mu  sync.Mutex
	log []string
	val map[string]string
}

func newMarkServer(t testing.TB) *markServer {
	t.Helper()
	m := &markServer{val: map[string]string{}}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.Method == http.MethodPost && strings.HasPrefix(r.URL.Path, "/mark/"):
			name := strings.TrimPrefix(r.URL.Path, "/mark/")
			b, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
			m.mu.Lock()
			m.log = append(m.log, name)
			m.val[name] = string(b)
			m.mu.Unlock()
		case r.Method == http.MethodGet && strings.HasPrefix(r.URL.Path, "/has/"):
			m.mu.Lock()
			_, ok := m.val[strings.TrimPrefix(r.URL.Path, "/has/")]
			m.mu.Unlock()
			if !ok {
				http.NotFound(w, r)
			}
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(srv.Close)
	m.URL = srv.URL
	return m
}

// Mark is the shell command that records name.
func (m *markServer) Mark(name string) string { return "curl -sf -X POST " + m.URL + "/mark/" + name }

// Has is the shell condition that name was marked.
func (m *markServer) Has(name string) string { return "curl -sf " + m.URL + "/has/" + name }

// Marks returns every mark so far, in order.
func (m *markServer) Marks() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]string(nil), m.log...)
}

// Count returns how often name was marked.
func (m *markServer) Count(name string) int {
	n := 0
	for _, l := range m.Marks() {
		if l == name {
			n++
		}
	}
	return n
}

// Value returns the body name was last marked with.
func (m *markServer) Value(name string) (string, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	v, ok := m.val[name]
	return v, ok
}

// procsWithEnv returns the host pids of the processes whose environment
// holds kv (give tasks a unique NAME=value to find all their processes).
func procsWithEnv(kv string) []int {
	var pids []int
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "environ"))
		if err != nil {
			continue
		}
		for _, v := range bytes.Split(b, []byte{0}) {
			if string(v) == kv {
				if st, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat")); err == nil && !zombie(st) {
					pids = append(pids, pid)
				}
				break
			}
		}
	}
	return pids
}

func zombie(stat []byte) bool {
	i := bytes.LastIndexByte(stat, ')')
	return i >= 0 && i+2 < len(stat) && stat[i+2] == 'Z'
}
