// Package audit keeps the record of every API call: who (identity, method of
// authentication, source address), what (method, path, query), the outcome
// (status, and the denial reason for refused requests) and when. Records are
// JSON lines appended to a root-only file; each is written before the
// request's log line, with one write(2), so a crashing daemon loses none.
package audit

import (
	"encoding/json"
	"os"
	"sync"
	"time"

	"github.com/moat/moat/internal/identity"
	"github.com/moat/moat/internal/route"
)

// Entry is one line of the audit log.
type Entry struct {
	Time       time.Time `json:"time"`
	User       string    `json:"user"`
	Protocol   string    `json:"protocol"`
	Address    string    `json:"address"`
	Trusted    bool      `json:"trusted"`
	Method     string    `json:"method"`
	Path       string    `json:"path"`
	Query      string    `json:"query,omitempty"`
	Status     int       `json:"status"`
	DurationUS int64     `json:"duration_us"`
	Denial     string    `json:"denial,omitempty"`
}

// Log appends entries to a file.
type Log struct {
	mu sync.Mutex
	f  *os.File
}

// Open opens (creating, mode 0600) the audit log at path.
func Open(path string) (*Log, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	return &Log{f: f}, nil
}

// Record writes the entry for one request.
func (l *Log) Record(r route.Record) {
	id := r.Identity
	if id == nil {
		id = &identity.Identity{}
	}
	e := Entry{Time: r.Time.UTC(), User: id.Username, Protocol: id.Protocol, Address: id.Address,
		Trusted: id.Trusted(), Method: r.Method, Path: r.Path, Query: r.Query, Status: r.Status,
		DurationUS: r.Duration.Microseconds(), Denial: r.Denial}
	buf, err := json.Marshal(e)
	if err != nil {
		return
	}
	l.mu.Lock()
	_, _ = l.f.Write(append(buf, '\n'))
	l.mu.Unlock()
}

// Close closes the file.
func (l *Log) Close() error { return l.f.Close() }
