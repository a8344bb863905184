package server

import "testing"

func TestPprofListensOnLoopbackOnly(t *testing.T) {
	for _, addr := range []string{"0.0.0.0:0", ":0", "[::]:0", "192.0.2.1:0", "example.com:0"} {
		if l, err := listenLoopback(addr); err == nil {
			l.Close()
			t.Errorf("listenLoopback(%q) = nil error, want a refusal", addr)
		}
	}
	for _, addr := range []string{"127.0.0.1:0", "localhost:0"} {
		l, err := listenLoopback(addr)
		if err != nil {
			t.Errorf("listenLoopback(%q) = %v, want a listener", addr, err)
			continue
		}
		l.Close()
	}
}
