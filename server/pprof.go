package server

import (
	"errors"
	"net"
	"net/http"
	"net/http/pprof"
	"strings"
)

// pprofHandler serves net/http/pprof's pages under /debug/pprof/ on a mux
// of its own. (Importing the package also registers them on
// http.DefaultServeMux, which no listener of the server serves.)
func pprofHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return mux
}

// listenLoopback listens on addr, whose host must be a loopback address or
// localhost.
func listenLoopback(addr string) (net.Listener, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	if ip := net.ParseIP(host); !strings.EqualFold(host, "localhost") && (ip == nil || !ip.IsLoopback()) {
		return nil, errors.New("profiles are served on a loopback address only (such as 127.0.0.1:6060)")
	}
	return net.Listen("tcp", addr)
}
