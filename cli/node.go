package cli

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"custody/node"
)

// nodeCmd is `custody node`: run a node agent by hand (the server starts
// local ones itself).
func nodeCmd() *cobra.Command {
	var cfg node.AgentConfig
	var credFile, caFile, logLevel string
	credFD, caFD := -1, -1
	cmd := &cobra.Command{
		Use:   "node",
		Short: "Run a node agent: join a pool over HTTPS and run its tasks, each in a sandbox",
		Long: "Run a node agent. The credential comes from --credential-file (read at start; keep it outside\n" +
			"/etc, /opt and /usr, mode 0600) or an inherited descriptor (--credential-fd); it names the\n" +
			"account, pool and node. Tasks run under --root, each in a sandbox of its own (user, mount and\n" +
			"PID namespaces, control groups): the agent must run as root on Linux. --unsafe-shared-host runs\n" +
			"tasks without one, as the agent's user, where the host cannot build it.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var level slog.Level
			if err := level.UnmarshalText([]byte(logLevel)); err != nil {
				return fmt.Errorf("--log-level %q: use debug, info, warn or error", logLevel)
			}
			cfg.Logger = slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), &slog.HandlerOptions{Level: level}))
			switch {
			case credFD >= 0:
				b, err := readFD(credFD, "--credential-fd")
				if err != nil {
					return err
				}
				cfg.Credential = strings.TrimSpace(string(b))
			case credFile != "":
				b, err := os.ReadFile(credFile)
				if err != nil {
					return fmt.Errorf("--credential-file: %w", err)
				}
				cfg.Credential = strings.TrimSpace(string(b))
			}
			if cfg.Credential == "" {
				return errors.New("no node credential: use --credential-file (or --credential-fd)")
			}
			var pem []byte
			switch {
			case caFD >= 0:
				b, err := readFD(caFD, "--ca-fd")
				if err != nil {
					return err
				}
				pem = b
			case caFile != "":
				b, err := os.ReadFile(caFile)
				if err != nil {
					return fmt.Errorf("--ca-file: %w", err)
				}
				pem = b
			}
			if pem != nil {
				cfg.CAPool = x509.NewCertPool()
				if !cfg.CAPool.AppendCertsFromPEM(pem) {
					return errors.New("the CA given holds no PEM certificate")
				}
			}
			if cfg.UnsafeSharedHost {
				fmt.Fprintln(cmd.ErrOrStderr(), "WARNING: tasks run WITHOUT a sandbox (--unsafe-shared-host): they can read everything this agent's user can, the node credential included.")
			} else if !cfg.OwnMountNamespace && os.Geteuid() == 0 {
				// Run in a mount namespace of the agent's own, so that what it
				// mounts (the certificates' tmpfs) goes away with it.
				return reexecInOwnMountNamespace(cmd, cfg.Credential, pem)
			}
			a, err := node.NewAgent(cfg)
			if err != nil {
				return err
			}
			return a.Run(cmd.Context())
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.Server, "server", "", "the server's node channel, https://batch.{domain}:{port}")
	f.StringVar(&cfg.Connect, "connect", "", "host:port to dial for the server (default: resolve the --server host)")
	f.StringVar(&credFile, "credential-file", "", "file holding the node credential")
	f.IntVar(&credFD, "credential-fd", -1, "inherited file descriptor to read the node credential from (then closed)")
	f.StringVar(&caFile, "ca-file", "", "PEM file of the CA that signed the server's certificate")
	f.IntVar(&caFD, "ca-fd", -1, "inherited file descriptor to read the CA's PEM from (then closed)")
	f.StringVar(&cfg.Root, "root", "", "the node's root directory (tasks run in {root}/workitems/...)")
	f.StringVar(&cfg.Listen, "listen", "127.0.0.1:0", "loopback address for the managed identity endpoint")
	f.IntVar(&cfg.UIDBase, "uid-base", node.DefaultUIDBase, "first host user id of the ranges task users are taken from (65536 ids per agent)")
	f.BoolVar(&cfg.UnsafeSharedHost, "unsafe-shared-host", false, "run tasks WITHOUT a sandbox, as the agent's user, where the host cannot build one")
	f.BoolVar(&cfg.OwnMountNamespace, "own-mount-namespace", false, "the agent was started in a mount namespace of its own (the server's local nodes are)")
	_ = f.MarkHidden("own-mount-namespace")
	f.StringVar(&logLevel, "log-level", "warn", "log level: debug, info, warn, error")
	return cmd
}

// reexecInOwnMountNamespace runs this agent again in a new mount
// namespace, handing it the credential and CA through pipes, and waits for
// it, passing on SIGINT and SIGTERM.
func reexecInOwnMountNamespace(cmd *cobra.Command, credential string, ca []byte) error {
	args := []string{"node"}
	cmd.Flags().Visit(func(f *pflag.Flag) {
		switch f.Name {
		case "credential-file", "credential-fd", "ca-file", "ca-fd", "own-mount-namespace":
			return
		}
		args = append(args, "--"+f.Name+"="+f.Value.String())
	})
	args = append(args, "--credential-fd=3", "--own-mount-namespace")
	child := exec.Command("/proc/self/exe", args...)
	child.Stdin, child.Stdout, child.Stderr = nil, cmd.OutOrStdout(), cmd.ErrOrStderr()
	child.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNS, Pdeathsig: syscall.SIGKILL}
	credR, credW, err := os.Pipe()
	if err != nil {
		return err
	}
	child.ExtraFiles = []*os.File{credR}
	var caW *os.File
	if ca != nil {
		var caR *os.File
		if caR, caW, err = os.Pipe(); err != nil {
			return err
		}
		child.ExtraFiles = append(child.ExtraFiles, caR)
		child.Args = append(child.Args, "--ca-fd=4")
	}
	if err := child.Start(); err != nil {
		return fmt.Errorf("start the agent in its own mount namespace: %w", err)
	}
	for _, f := range child.ExtraFiles {
		f.Close()
	}
	// Both fit in a pipe's buffer.
	_, _ = credW.Write([]byte(credential))
	credW.Close()
	if caW != nil {
		_, _ = caW.Write(ca)
		caW.Close()
	}
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sigs)
	done := make(chan error, 1)
	go func() { done <- child.Wait() }()
	ctx := cmd.Context()
	for {
		select {
		case s := <-sigs:
			_ = child.Process.Signal(s)
		case <-ctx.Done():
			_ = child.Process.Signal(syscall.SIGTERM)
			ctx = context.Background()
		case err := <-done:
			var ee *exec.ExitError
			if errors.As(err, &ee) {
				return fmt.Errorf("the node agent exited: %s", ee.ProcessState)
			}
			return err
		}
	}
}

// readFD reads an inherited descriptor to its end and closes it.
func readFD(fd int, flag string) ([]byte, error) {
	f := os.NewFile(uintptr(fd), flag)
	if f == nil {
		return nil, fmt.Errorf("%s %d: not an open file descriptor", flag, fd)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("%s %d: %w", flag, fd, err)
	}
	return b, nil
}
