package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// endpoint and admin are the server's data-directory files server.json and
// admin.json, read as any SDK program would.
type endpoint struct {
	Address string `json:"address"`
	Domain  string `json:"domain"`
	Port    int    `json:"port"`
	CAFile  string `json:"caFile"`
}

type admin struct {
	TenantID       string `json:"tenantId"`
	SubscriptionID string `json:"subscriptionId"`
	ClientID       string `json:"clientId"`
	ClientSecret   string `json:"clientSecret"`
}

// serverProc is the `custody server` process under test.
type serverProc struct {
	binary    string
	cmd       *exec.Cmd
	exited    chan struct{}
	ep        endpoint
	admin     admin
	logPath   string
	pprofAddr string // "" unless started with --pprof-listen
	sandbox   string // what the server says of its local nodes
	client    *http.Client
}

func goBuild(ctx context.Context, out string) error {
	cmd := exec.CommandContext(ctx, "go", "build", "-o", out, "./cmd/custody")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("go build ./cmd/custody (run from the module root, or give -custody): %w", err)
	}
	return nil
}

// freeLoopbackAddr returns a loopback address whose port was free a moment
// ago.
func freeLoopbackAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

func startServer(ctx context.Context, bin, dir string, pprof bool) (*serverProc, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	data := filepath.Join(dir, "data")
	s := &serverProc{binary: bin, logPath: filepath.Join(dir, "server.log"), exited: make(chan struct{})}
	args := []string{"server", "--listen", "127.0.0.1:0", "--data-dir", data, "--node-root", filepath.Join(dir, "nodes")}
	if pprof {
		addr, err := freeLoopbackAddr()
		if err != nil {
			return nil, err
		}
		s.pprofAddr = addr
		args = append(args, "--pprof-listen", addr)
	}
	logf, err := os.Create(s.logPath)
	if err != nil {
		return nil, err
	}
	s.cmd = exec.Command(bin, args...)
	s.cmd.Stdout, s.cmd.Stderr = logf, logf
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	if err := s.cmd.Start(); err != nil {
		logf.Close()
		return nil, err
	}
	go func() { _ = s.cmd.Wait(); logf.Close(); close(s.exited) }()
	deadline := time.Now().Add(60 * time.Second)
	for {
		if err := s.ready(data); err == nil {
			break
		} else if time.Now().After(deadline) {
			s.stop()
			return nil, fmt.Errorf("the server did not come up within 60 s (%v); its log: %s", err, s.logPath)
		}
		select {
		case <-s.exited:
			log, _ := os.ReadFile(s.logPath)
			return nil, fmt.Errorf("the server exited: %s", strings.TrimSpace(string(log)))
		case <-ctx.Done():
			s.stop()
			return nil, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	s.sandbox = "sandboxed (the default)"
	if log, _ := os.ReadFile(s.logPath); strings.Contains(string(log), "WITHOUT a sandbox") {
		s.sandbox = "NOT sandboxed (the host cannot build the sandbox)"
	}
	return s, nil
}

// ready reads the server's files and checks that it answers /healthz.
func (s *serverProc) ready(data string) error {
	b, err := os.ReadFile(filepath.Join(data, "server.json"))
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, &s.ep); err != nil {
		return err
	}
	if b, err = os.ReadFile(filepath.Join(data, "admin.json")); err != nil {
		return err
	}
	if err := json.Unmarshal(b, &s.admin); err != nil {
		return err
	}
	if s.client == nil {
		pem, err := os.ReadFile(s.ep.CAFile)
		if err != nil {
			return err
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return errors.New("no certificate in " + s.ep.CAFile)
		}
		s.client = &http.Client{Transport: transport(pool, s.ep.Domain, s.ep.Address)}
	}
	resp, err := s.client.Get(s.url("management") + "/healthz")
	if err != nil {
		return err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("/healthz: %s", resp.Status)
	}
	return nil
}

// url is https://{name}.{domain}:{port}.
func (s *serverProc) url(name string) string {
	return "https://" + name + "." + s.ep.Domain + ":" + strconv.Itoa(s.ep.Port)
}

// stop ends the server as SIGTERM does (it stores its queued audit records
// first), and kills it after 20 s.
func (s *serverProc) stop() {
	select {
	case <-s.exited:
		return
	default:
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.exited:
	case <-time.After(20 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.exited
	}
}

// transport trusts pool and sends every connection for domain and its
// subdomains to addr, so that no DNS is needed for *.{domain}. Like the SDK's
// default transport it negotiates HTTP/2.
func transport(pool *x509.CertPool, domain, addr string) *http.Transport {
	d := &net.Dialer{Timeout: 10 * time.Second}
	domain = strings.ToLower(domain)
	return &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12},
		DialContext: func(ctx context.Context, network, a string) (net.Conn, error) {
			host, _, err := net.SplitHostPort(a)
			if err != nil {
				return nil, err
			}
			if h := strings.ToLower(host); h == domain || strings.HasSuffix(h, "."+domain) {
				return d.DialContext(ctx, network, addr)
			}
			return d.DialContext(ctx, network, a)
		},
		ForceAttemptHTTP2:   true,
		MaxIdleConnsPerHost: 64,
		IdleConnTimeout:     90 * time.Second,
	}
}

// profile saves a CPU profile of the server taken over d to file, or does
// nothing when the server serves no profiles.
func (s *serverProc) profile(ctx context.Context, d time.Duration, file string) error {
	if s.pprofAddr == "" {
		return nil
	}
	secs := max(1, int(d/time.Second))
	req, err := http.NewRequestWithContext(ctx, "GET", "http://"+s.pprofAddr+"/debug/pprof/profile?seconds="+strconv.Itoa(secs), nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("profile: %s", resp.Status)
	}
	f, err := os.Create(file)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// cpuTime returns the CPU time (user and system) the server process has
// used so far.
func (s *serverProc) cpuTime() time.Duration {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(s.cmd.Process.Pid) + "/stat")
	if err != nil {
		return 0
	}
	// The command name, in parentheses, may hold spaces: fields are
	// counted after its closing parenthesis (utime and stime are fields 14
	// and 15, in clock ticks of 1/100 s).
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	if len(f) < 13 {
		return 0
	}
	u, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(u+st) * 10 * time.Millisecond
}

// selfCPUTime returns the CPU time this process has used so far.
func selfCPUTime() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
