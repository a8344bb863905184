package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// The file API: the server lists, reads and deletes node and task files
// through the agent. Each request is confined to one served directory: the
// node root for node files, the task's own directory for task files (the
// Dir of the FileRequest, relative to the node root). Nothing outside it
// can be reached:
//
//   - Paths are resolved with os.Root beneath the served directory, every
//     component at the time of the call: a symbolic link that stays inside
//     it is followed, one that leads out (or is absolute) is refused with
//     403, for reads, listings and deletes alike. Deleting a link removes
//     the link, never what it points to.
//   - Listings never follow links: a link is listed as a file with its own
//     (lstat) size, mode and time, and a recursive listing does not descend
//     through it.
//   - The served directory of a task is reached from the node root without
//     following any link.
//   - Certificate material is never served, listed or deleted: the
//     certificates directory lies outside the node root by default
//     (AgentConfig.CertificatesDir), and any file or directory that is the
//     certificates directory or one of its files is refused with 403
//     wherever it appears.

// FileInfo describes a node file in listings.
type FileInfo struct {
	Name        string    `json:"name"`
	IsDirectory bool      `json:"isDirectory"`
	Size        int64     `json:"size"`
	Mode        string    `json:"mode"`
	Modified    time.Time `json:"modified"`
}

// FileListing is the answer for a directory.
type FileListing struct {
	Files []FileInfo `json:"files"`
}

// certificatesDir is where the agent installs the pool's certificates.
func (c AgentConfig) certificatesDir() string {
	if c.CertificatesDir != "" {
		return c.CertificatesDir
	}
	return strings.TrimRight(c.Root, string(os.PathSeparator)) + ".certs"
}

// certGuard recognises the certificates directory and the files in it, by
// identity (device and inode), wherever a path leads to them.
type certGuard []os.FileInfo

func (a *Agent) certGuard() certGuard {
	dir := a.cfg.certificatesDir()
	st, err := os.Lstat(dir)
	if err != nil {
		return nil
	}
	g := certGuard{st}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if fi, err := e.Info(); err == nil {
			g = append(g, fi)
		}
	}
	return g
}

func (g certGuard) covers(fi os.FileInfo) bool {
	for _, c := range g {
		if os.SameFile(c, fi) {
			return true
		}
	}
	return false
}

// filePath cleans a requested path relative to the served directory; ok is
// false for paths with ".." components.
func filePath(p string) (string, bool) {
	for _, s := range strings.Split(p, "/") {
		if s == ".." {
			return "", false
		}
	}
	p = strings.TrimPrefix(path.Clean("/"+p), "/")
	if p == "" {
		p = "."
	}
	return p, true
}

// openServed opens the directory a request is confined to: the node root,
// or dir beneath it, reached without following any link.
func (a *Agent) openServed(dir string) (*os.Root, error) {
	root, err := os.OpenRoot(a.cfg.Root)
	if err != nil {
		return nil, err
	}
	if dir == "" {
		return root, nil
	}
	defer root.Close()
	rel, ok := filePath(dir)
	if !ok || rel == "." {
		return nil, fs.ErrPermission
	}
	parts := strings.Split(rel, "/")
	for i := range parts {
		st, err := root.Lstat(strings.Join(parts[:i+1], "/"))
		if err != nil {
			return nil, err
		}
		if !st.IsDir() {
			return nil, fs.ErrPermission
		}
	}
	return root.OpenRoot(rel)
}

// fileError answers an error of the file API: 404 for what does not exist,
// 403 for anything else (a path leading out of the served directory, a
// link loop, certificate material, a file the agent may not read).
func fileError(w http.ResponseWriter, err error) {
	if errors.Is(err, fs.ErrNotExist) {
		http.Error(w, "not found", http.StatusNotFound)
		return
	}
	http.Error(w, "forbidden", http.StatusForbidden)
}

// serveFile answers a file request (GET, HEAD or DELETE), confined to the
// directory it names (see the file API above).
func (a *Agent) serveFile(w http.ResponseWriter, fr FileRequest) {
	rel, ok := filePath(fr.Path)
	if !ok {
		http.Error(w, "bad path", http.StatusBadRequest)
		return
	}
	r, err := http.NewRequest(fr.Method, "/", nil)
	if err != nil || (fr.Method != http.MethodGet && fr.Method != http.MethodHead && fr.Method != http.MethodDelete) {
		http.Error(w, "bad method", http.StatusMethodNotAllowed)
		return
	}
	if fr.Range != "" {
		r.Header.Set("Range", fr.Range)
	}
	root, err := a.openServed(fr.Dir)
	if err != nil {
		fileError(w, err)
		return
	}
	defer root.Close()
	guard := a.certGuard()
	recursive := fr.Recursive

	if r.Method == http.MethodDelete {
		st, err := root.Lstat(rel)
		if err != nil {
			fileError(w, err)
			return
		}
		if rel == "." || guard.covers(st) {
			fileError(w, fs.ErrPermission)
			return
		}
		if st.IsDir() && !recursive {
			http.Error(w, "directory", http.StatusConflict)
			return
		}
		if st.IsDir() {
			err = root.RemoveAll(rel)
		} else {
			err = root.Remove(rel)
		}
		if err != nil {
			fileError(w, err)
			return
		}
		w.WriteHeader(http.StatusNoContent)
		return
	}

	// O_NONBLOCK: opening a named pipe a task left must not hang.
	f, err := root.OpenFile(rel, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		fileError(w, err)
		return
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		fileError(w, err)
		return
	}
	if guard.covers(st) {
		fileError(w, fs.ErrPermission)
		return
	}
	if st.IsDir() {
		sub, err := root.OpenRoot(rel)
		if err != nil {
			fileError(w, err)
			return
		}
		defer sub.Close()
		out := FileListing{Files: []FileInfo{}}
		_ = fs.WalkDir(sub.FS(), ".", func(p string, d fs.DirEntry, err error) error {
			if err != nil || p == "." {
				return nil
			}
			info, err := d.Info() // lstat: links are not followed
			if err != nil {
				return nil
			}
			if guard.covers(info) {
				if d.IsDir() {
					return fs.SkipDir
				}
				return nil
			}
			out.Files = append(out.Files, FileInfo{Name: p, IsDirectory: d.IsDir(), Size: info.Size(),
				Mode: fmt.Sprintf("0%o", info.Mode().Perm()), Modified: info.ModTime().UTC()})
			if d.IsDir() && !recursive {
				return fs.SkipDir
			}
			return nil
		})
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("X-Custody-Directory", "true")
		_ = json.NewEncoder(w).Encode(out)
		return
	}
	if !st.Mode().IsRegular() {
		http.Error(w, "not a regular file", http.StatusNotFound)
		return
	}
	w.Header().Set("X-Custody-Mode", fmt.Sprintf("0%o", st.Mode().Perm()))
	w.Header().Set("Content-Type", "application/octet-stream")
	http.ServeContent(w, r, "", st.ModTime(), f)
}

// maxFileAnswers bounds the file requests an agent answers at once.
const maxFileAnswers = 8

// answerFiles answers the file requests of a sync answer, each on its own
// POST /node/v1/files (see the node protocol).
func (a *Agent) answerFiles(ctx context.Context, reqs []FileRequest) {
	for _, fr := range reqs {
		go func() {
			select {
			case a.fileSlots <- struct{}{}:
			case <-ctx.Done():
				return
			}
			defer func() { <-a.fileSlots }()
			if err := a.answerFile(ctx, fr); err != nil {
				a.log.Warn("node: file reply", "err", err)
			}
		}()
	}
}

// replyWriter turns serveFile's answer into a FileReply and a body that
// streams through a pipe into the reply's upload.
type replyWriter struct {
	h      http.Header
	sent   http.Header
	status int
	headed chan struct{}
	once   sync.Once
	pw     *io.PipeWriter
}

func (w *replyWriter) Header() http.Header { return w.h }

func (w *replyWriter) WriteHeader(code int) {
	w.once.Do(func() {
		w.status, w.sent = code, w.h.Clone()
		close(w.headed)
	})
}

func (w *replyWriter) Write(b []byte) (int, error) {
	w.WriteHeader(http.StatusOK)
	return w.pw.Write(b)
}

func (a *Agent) answerFile(ctx context.Context, fr FileRequest) error {
	pr, pw := io.Pipe()
	w := &replyWriter{h: http.Header{}, headed: make(chan struct{}), pw: pw}
	go func() {
		a.serveFile(w, fr)
		w.WriteHeader(http.StatusOK)
		pw.Close()
	}()
	<-w.headed
	reply := FileReply{ID: fr.ID, Status: w.status, Directory: w.sent.Get("X-Custody-Directory") == "true", ContentLength: -1,
		ContentRange: w.sent.Get("Content-Range"), LastModified: w.sent.Get("Last-Modified"), Mode: w.sent.Get("X-Custody-Mode")}
	if n, err := strconv.ParseInt(w.sent.Get("Content-Length"), 10, 64); err == nil && n >= 0 {
		reply.ContentLength = n
	}
	head, err := json.Marshal(reply)
	if err != nil {
		pr.CloseWithError(err)
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimRight(a.cfg.Server, "/")+"/node/v1/files", pr)
	if err != nil {
		pr.CloseWithError(err)
		return err
	}
	req.Header.Set("Authorization", CredentialScheme+" "+a.cfg.Credential)
	req.Header.Set("Content-Type", "application/octet-stream")
	req.Header.Set(FileReplyHeader, string(head))
	resp, err := a.http.Do(req)
	pr.CloseWithError(errors.New("node: the file reply is over"))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
	if resp.StatusCode/100 != 2 {
		return &protocolError{status: resp.StatusCode, body: string(body)}
	}
	return nil
}
