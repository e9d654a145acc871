// Package operation runs and tracks background operations: tasks, websocket
// sessions (exec) and tokens. Operations live in memory; a state change is
// published as an "operation" event.
package operation

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"maps"
	"net/http"
	"sync"
	"time"

	"github.com/moat/moat/api"
	"github.com/moat/moat/internal/errdefs"
	"github.com/moat/moat/internal/event"
	"github.com/moat/moat/internal/identity"
)

// Args describes a new operation.
type Args struct {
	Class       string
	Description string
	Project     string
	Resources   map[string][]string
	Metadata    map[string]any
	// SecretKeys name metadata entries that only the creator and full
	// admins may read (token secrets, websocket fds).
	SecretKeys []string
	// Run does the work of a task or websocket operation; nil for tokens,
	// which stay running until they are used, cancelled or expire.
	Run func(ctx context.Context, op *Operation) error
	// OnCancel runs when a caller cancels the operation; nil with Run set
	// means cancelling cancels Run's context.
	OnCancel func(op *Operation) error
	// MayCancel allows DELETE /1.0/operations/{id}.
	MayCancel bool
	// Connect serves /websocket for a websocket operation after the secret
	// was checked.
	Connect func(op *Operation, secret string, w http.ResponseWriter, r *http.Request) error
	// WebsocketSecrets are the secrets Connect accepts.
	WebsocketSecrets []string
	Creator          *identity.Identity
	// ID, when set, is used instead of a fresh UUID (an operation that
	// represents persisted state, such as a trust token after a restart).
	ID string
}

// Operation is one background operation.
type Operation struct {
	mgr  *Manager
	args Args

	mu        sync.Mutex
	id        string
	createdAt time.Time
	updatedAt time.Time
	status    api.StatusCode
	metadata  map[string]any
	err       string
	done      chan struct{}
	cancel    context.CancelFunc
}

// Manager holds the operations of the daemon.
type Manager struct {
	bus *event.Bus
	// keep is how long finished operations stay visible.
	keep time.Duration

	mu  sync.RWMutex
	ops map[string]*Operation
	wg  sync.WaitGroup
}

// NewManager returns a manager publishing to bus.
func NewManager(bus *event.Bus) *Manager {
	return &Manager{bus: bus, keep: 30 * time.Second, ops: map[string]*Operation{}}
}

// Create registers a new operation in the Pending state; Start runs it.
func (m *Manager) Create(args Args) (*Operation, error) {
	if args.Class == "" {
		return nil, errors.New("operation needs a class")
	}
	now := time.Now().UTC()
	if args.ID == "" {
		args.ID = newUUID()
	}
	op := &Operation{
		mgr: m, args: args, id: args.ID, createdAt: now, updatedAt: now,
		status: api.Pending, metadata: maps.Clone(args.Metadata), done: make(chan struct{}),
	}
	if op.metadata == nil {
		op.metadata = map[string]any{}
	}
	m.mu.Lock()
	m.ops[op.id] = op
	m.mu.Unlock()
	return op, nil
}

// Start moves the operation to Running and runs its work in the background.
func (op *Operation) Start() {
	ctx, cancel := context.WithCancel(context.Background())
	op.mu.Lock()
	op.cancel = cancel
	op.mu.Unlock()
	op.setStatus(api.Running, "")
	if op.args.Run == nil {
		return
	}
	op.mgr.wg.Add(1)
	go func() {
		defer op.mgr.wg.Done()
		defer cancel()
		err := op.args.Run(ctx, op)
		switch {
		case err == nil:
			op.setStatus(api.Success, "")
		case errors.Is(err, context.Canceled):
			op.setStatus(api.Cancelled, err.Error())
		default:
			op.setStatus(api.Failure, err.Error())
		}
	}()
}

// ID is the operation's UUID.
func (op *Operation) ID() string { return op.id }

// URL is the operation's API path.
func (op *Operation) URL() string { return "/1.0/operations/" + op.id }

// Class is the operation's class.
func (op *Operation) Class() string { return op.args.Class }

// Project is the project the operation belongs to; "" for server-level
// operations (visible to full admins only).
func (op *Operation) Project() string { return op.args.Project }

// Creator is the identity that created the operation.
func (op *Operation) Creator() *identity.Identity { return op.args.Creator }

// Metadata returns a copy of the operation's metadata, secrets included.
func (op *Operation) Metadata() map[string]any {
	op.mu.Lock()
	defer op.mu.Unlock()
	return maps.Clone(op.metadata)
}

// UpdateMetadata merges values into the metadata and publishes the change.
func (op *Operation) UpdateMetadata(values map[string]any) {
	op.mu.Lock()
	for k, v := range values {
		op.metadata[k] = v
	}
	op.updatedAt = time.Now().UTC()
	op.mu.Unlock()
	op.publish()
}

// Done is closed when the operation reaches a final state.
func (op *Operation) Done() <-chan struct{} { return op.done }

// Finish ends an operation without Run (a used token) with success or err.
func (op *Operation) Finish(err error) {
	if err != nil {
		op.setStatus(api.Failure, err.Error())
		return
	}
	op.setStatus(api.Success, "")
}

// Cancel cancels the operation on a caller's request.
func (op *Operation) Cancel() error {
	if !op.args.MayCancel {
		return errdefs.Invalidf("This operation can't be cancelled")
	}
	op.mu.Lock()
	final := op.status.IsFinal()
	cancel := op.cancel
	op.mu.Unlock()
	if final {
		return errdefs.Invalidf("Operation is already done")
	}
	if op.args.OnCancel != nil {
		if err := op.args.OnCancel(op); err != nil {
			return err
		}
	}
	if op.args.Run != nil && cancel != nil {
		op.setStatus(api.Cancelling, "")
		cancel()
		return nil
	}
	op.setStatus(api.Cancelled, "")
	return nil
}

// CheckWebsocketSecret compares secret with the operation's websocket
// secrets in constant time.
func (op *Operation) CheckWebsocketSecret(secret string) bool {
	ok := 0
	for _, s := range op.args.WebsocketSecrets {
		ok |= subtle.ConstantTimeCompare([]byte(s), []byte(secret))
	}
	return ok == 1
}

// Connect hands a websocket connection to the operation.
func (op *Operation) Connect(secret string, w http.ResponseWriter, r *http.Request) error {
	if op.args.Connect == nil {
		return errdefs.Invalidf("Operation %s has no websocket", op.id)
	}
	return op.args.Connect(op, secret, w, r)
}

func (op *Operation) setStatus(s api.StatusCode, errText string) {
	op.mu.Lock()
	if op.status.IsFinal() {
		op.mu.Unlock()
		return
	}
	op.status = s
	op.err = errText
	op.updatedAt = time.Now().UTC()
	final := s.IsFinal()
	op.mu.Unlock()
	// Publish before waking waiters: whoever saw Wait return can rely on
	// the final event having been sent.
	op.publish()
	if final {
		close(op.done)
		time.AfterFunc(op.mgr.keep, func() { op.mgr.remove(op.id) })
	}
}

func (op *Operation) publish() {
	// Events carry the redacted view: clients learn secrets from the
	// response that created the operation, never from the event stream.
	op.mgr.bus.Publish(api.EventTypeOperation, op.args.Project, requestorOf(op.args.Creator), op.Render(nil))
}

// Render returns the API view of the operation for viewer: secrets are
// removed unless viewer is a full admin or the operation's creator. A nil
// viewer gets the redacted view.
func (op *Operation) Render(viewer *identity.Identity) *api.Operation {
	op.mu.Lock()
	defer op.mu.Unlock()
	md := maps.Clone(op.metadata)
	if viewer == nil || !(viewer.IsAdmin() || viewer.Same(op.args.Creator)) {
		for _, k := range op.args.SecretKeys {
			delete(md, k)
		}
	}
	return &api.Operation{
		ID: op.id, Class: op.args.Class, Description: op.args.Description,
		CreatedAt: op.createdAt, UpdatedAt: op.updatedAt,
		Status: op.status.String(), StatusCode: op.status,
		Resources: op.args.Resources, Metadata: md, MayCancel: op.args.MayCancel,
		Err: op.err, Location: "none", Requestor: requestorOf(op.args.Creator),
	}
}

// SecretsVisibleTo reports whether viewer sees this operation's secrets.
func (op *Operation) SecretsVisibleTo(viewer *identity.Identity) bool {
	return viewer.IsAdmin() || viewer.Same(op.args.Creator)
}

// Get returns an operation by id.
func (m *Manager) Get(id string) (*Operation, error) {
	m.mu.RLock()
	op, ok := m.ops[id]
	m.mu.RUnlock()
	if !ok {
		return nil, errdefs.NotFoundf("Operation not found")
	}
	return op, nil
}

// List returns every operation.
func (m *Manager) List() []*Operation {
	m.mu.RLock()
	defer m.mu.RUnlock()
	out := make([]*Operation, 0, len(m.ops))
	for _, op := range m.ops {
		out = append(out, op)
	}
	return out
}

// Shutdown cancels every cancellable running operation and waits up to
// timeout for running work to finish.
func (m *Manager) Shutdown(timeout time.Duration) {
	for _, op := range m.List() {
		op.mu.Lock()
		cancel, final := op.cancel, op.status.IsFinal()
		op.mu.Unlock()
		if !final && cancel != nil && op.args.Run != nil {
			cancel()
		}
	}
	done := make(chan struct{})
	go func() { m.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(timeout):
	}
}

func (m *Manager) remove(id string) {
	m.mu.Lock()
	delete(m.ops, id)
	m.mu.Unlock()
}

func requestorOf(id *identity.Identity) *api.Requestor {
	if id == nil {
		return nil
	}
	return id.Requestor()
}

func newUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}
