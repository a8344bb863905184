package compute

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"custody/batch"
)

// countingLauncher starts pretend agents and counts the running ones.
type countingLauncher struct {
	mu      sync.Mutex
	running int
}

func (l *countingLauncher) Launch(account, poolID, nodeID, credential string) (func(), <-chan struct{}, error) {
	l.mu.Lock()
	l.running++
	l.mu.Unlock()
	exited := make(chan struct{})
	var once sync.Once
	return func() {
		once.Do(func() {
			l.mu.Lock()
			l.running--
			l.mu.Unlock()
			close(exited)
		})
	}, exited, nil
}

func (l *countingLauncher) count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.running
}

// TestFenceStopsRun: once Config.Fence refuses, Run makes no further pass:
// it returns at once and stops every local node, though its context lives
// on.
func TestFenceStopsRun(t *testing.T) {
	dek, err := batch.NewDEK(batch.GenerateDEKBytes(), 1)
	if err != nil {
		t.Fatal(err)
	}
	var lost atomic.Bool
	launcher := &countingLauncher{}
	tasks := &fakeTasks{running: map[string]string{}, requeued: map[string]int{}}
	s := New(Config{Store: &memPools{m: map[string]*Pool{}}, Nodes: &memNodes{m: map[string]RemoteNode{}}, Tasks: tasks,
		Keys: oneAccount{&batch.Account{Name: "acct", UID: "uid"}, dek}, Poll: time.Millisecond, Launcher: launcher,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Fence: func(context.Context) error {
			if lost.Load() {
				return errors.New("lease lost")
			}
			return nil
		}})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if _, err := s.CreatePool(ctx, "acct", &Pool{ID: "p1", VMSize: "standard_d2s_v3", TargetDedicated: 2}); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { s.Run(ctx); close(done) }()
	deadline := time.Now().Add(5 * time.Second)
	for launcher.count() != 2 {
		if time.Now().After(deadline) {
			t.Fatalf("%d local nodes running, want 2", launcher.count())
		}
		time.Sleep(10 * time.Millisecond)
	}
	lost.Store(true)
	select {
	case <-done:
	case <-time.After(2 * time.Second):
		t.Fatal("Run went on after the fence refused")
	}
	if n := launcher.count(); n != 0 {
		t.Errorf("%d local nodes still running after the fence refused", n)
	}
}
