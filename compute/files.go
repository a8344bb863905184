package compute

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io"
	"strings"
	"sync"
	"time"

	"custody"
	"custody/node"
)

// Node and task files travel over the node channel: the server asks the
// agent in a sync answer and the agent posts the reply on its own
// authenticated call (see node/protocol.go). The server never connects to
// an address an agent names.

// FileWait is how long a file request waits for the agent's reply to
// begin before it answers NodeNotReachable.
var FileWait = 20 * time.Second

// maxFileCalls bounds the file requests waiting on one node.
const maxFileCalls = 64

// FileAnswer is an agent's reply to a file request. The caller reads Body
// (at most the length the reply declares) and must Close it; until then the
// agent's upload stays open.
type FileAnswer struct {
	node.FileReply
	Body io.Reader

	done chan struct{}
	once sync.Once
}

// Close ends the reply: the agent's upload is answered.
func (f *FileAnswer) Close() error {
	f.once.Do(func() { close(f.done) })
	return nil
}

// guardedBody stops reads once the agent's upload request is over.
type guardedBody struct {
	mu   sync.Mutex
	r    io.Reader
	over bool
}

func (g *guardedBody) Read(p []byte) (int, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.over {
		return 0, io.ErrUnexpectedEOF
	}
	return g.r.Read(p)
}

func (g *guardedBody) end() {
	g.mu.Lock()
	g.over = true
	g.mu.Unlock()
}

// ErrNoNode is returned by TaskFile for a task that never ran here.
var ErrNoNode = errors.New("compute: the task has not run on a node of this server")

type taskNode struct{ poolID, nodeID string }

// lastNode remembers where a task last ran, for its files. Caller holds s.mu.
func (s *Service) lastNode(account, jobID, taskID string, n *liveNode) {
	if s.taskNodes == nil {
		s.taskNodes = map[string]taskNode{}
	}
	s.taskNodes[strings.ToLower(account)+"/"+jobID+"/"+taskID] = taskNode{n.PoolID, n.ID}
}

// TaskDir returns a task's directory relative to its node's root.
func TaskDir(jobID, taskID string) string {
	return "workitems/" + jobID + "/job-1/" + taskID
}

// NodeFile asks a node's agent for a file, a listing or a delete under the
// node's root (req.Dir names a task directory to confine it further).
func (s *Service) NodeFile(ctx context.Context, account, poolID, nodeID string, req node.FileRequest) (*FileAnswer, error) {
	a, err := s.account(ctx, account)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	n, err := s.node(a, poolID, nodeID)
	if err != nil {
		s.mu.Unlock()
		return nil, err
	}
	if !n.joined {
		s.mu.Unlock()
		return nil, custody.Errorf(custody.KindConflict, "NodeNotReady", "The node %q has not joined its pool yet; its files cannot be read.", nodeID)
	}
	if len(n.fileCalls) >= maxFileCalls {
		s.mu.Unlock()
		return nil, custody.Errorf(custody.KindUnavailable, "NodeBusy", "The node %q has too many file requests in flight; retry shortly.", nodeID)
	}
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	req.ID = hex.EncodeToString(b)
	call := make(chan *FileAnswer, 1)
	if n.fileCalls == nil {
		n.fileCalls = map[string]chan *FileAnswer{}
	}
	n.fileCalls[req.ID] = call
	n.fileOut = append(n.fileOut, req)
	s.wakeNode(n)
	s.mu.Unlock()

	t := time.NewTimer(FileWait)
	defer t.Stop()
	select {
	case ans := <-call:
		return ans, nil
	case <-ctx.Done():
	case <-t.C:
	}
	s.mu.Lock()
	_, waiting := n.fileCalls[req.ID]
	delete(n.fileCalls, req.ID)
	for i, r := range n.fileOut {
		if r.ID == req.ID {
			n.fileOut = append(n.fileOut[:i:i], n.fileOut[i+1:]...)
			break
		}
	}
	s.mu.Unlock()
	if !waiting { // the reply arrived meanwhile
		ans := <-call
		if ctx.Err() == nil {
			return ans, nil
		}
		ans.Close()
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return nil, custody.Errorf(custody.KindUnavailable, "NodeNotReachable", "The node holding the file did not answer in time; retry shortly.")
}

// TaskFile asks the node a task last ran on for one of the task's files,
// confined to the task's directory.
func (s *Service) TaskFile(ctx context.Context, account, jobID, taskID string, req node.FileRequest) (*FileAnswer, error) {
	a, err := s.account(ctx, account)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	tn, ok := s.taskNodes[strings.ToLower(a)+"/"+jobID+"/"+taskID]
	s.mu.Unlock()
	if !ok {
		return nil, ErrNoNode
	}
	req.Dir = TaskDir(jobID, taskID)
	ans, err := s.NodeFile(ctx, a, tn.poolID, tn.nodeID, req)
	if custody.IsNotFound(err) {
		return nil, custody.Errorf(custody.KindNotFound, "NodeNotFound", "The node task %q ran on (%s) has left its pool; its files are gone.", taskID, tn.nodeID)
	}
	return ans, err
}

// FileReply takes an agent's reply to a file request the server sent to
// that very node, and holds the agent's upload (body) open until the
// requester has read what it needs.
func (s *Service) FileReply(ctx context.Context, cred string, reply node.FileReply, body io.Reader) error {
	s.recall(ctx, cred)
	s.mu.Lock()
	n, err := s.byCredential(cred)
	if err != nil {
		s.mu.Unlock()
		return err
	}
	call := n.fileCalls[reply.ID]
	delete(n.fileCalls, reply.ID)
	s.mu.Unlock()
	if call == nil {
		return custody.Errorf(custody.KindNotFound, "FileRequestNotFound", "No file request %q is waiting for this node; it was answered already or timed out.", reply.ID)
	}
	g := &guardedBody{r: body}
	ans := &FileAnswer{FileReply: reply, Body: g, done: make(chan struct{})}
	call <- ans
	select {
	case <-ans.done:
	case <-ctx.Done():
	}
	g.end()
	return nil
}
