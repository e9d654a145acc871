// Package event is Moat's event bus: lifecycle, operation, logging and
// security events fan out to /1.0/events listeners and to sinks. Publishing
// never blocks: a listener that cannot keep up is disconnected rather than
// slowing the daemon down.
package event

import (
	"encoding/json"
	"sync"
	"time"

	"github.com/moat/moat/api"
)

// Event is an event on the bus with the facts listeners filter on.
type Event struct {
	api.Event
	// Requestor caused the event, if known; a listener may see events it
	// caused itself even without wider rights.
	Requestor *api.Requestor
}

// Listener receives events; Filter decides, per event, whether it is sent.
type Listener struct {
	C      chan Event
	filter func(*Event) bool
	done   chan struct{}
	once   sync.Once
}

// Done is closed when the bus drops the listener (too slow, or shutdown).
func (l *Listener) Done() <-chan struct{} { return l.done }

func (l *Listener) close() { l.once.Do(func() { close(l.done) }) }

// Bus fans events out to listeners.
type Bus struct {
	mu        sync.RWMutex
	listeners map[*Listener]struct{}
	location  string
}

// NewBus returns an empty bus; location is the "location" field of events
// ("none" on a standalone server).
func NewBus(location string) *Bus {
	return &Bus{listeners: map[*Listener]struct{}{}, location: location}
}

// Subscribe adds a listener; filter runs on the publisher's goroutine and
// must be quick.
func (b *Bus) Subscribe(filter func(*Event) bool) *Listener {
	l := &Listener{C: make(chan Event, 1024), filter: filter, done: make(chan struct{})}
	b.mu.Lock()
	b.listeners[l] = struct{}{}
	b.mu.Unlock()
	return l
}

// Unsubscribe removes a listener.
func (b *Bus) Unsubscribe(l *Listener) {
	b.mu.Lock()
	delete(b.listeners, l)
	b.mu.Unlock()
	l.close()
}

// HasListeners reports whether anyone listens, so producers of costly
// events (debug logging) can skip the work.
func (b *Bus) HasListeners() bool {
	b.mu.RLock()
	defer b.mu.RUnlock()
	return len(b.listeners) > 0
}

// Publish sends an event of the given type with metadata to every listener
// whose filter accepts it.
func (b *Bus) Publish(typ, project string, requestor *api.Requestor, metadata any) {
	b.mu.RLock()
	n := len(b.listeners)
	b.mu.RUnlock()
	if n == 0 {
		return
	}
	raw, err := json.Marshal(metadata)
	if err != nil {
		return
	}
	ev := Event{Event: api.Event{Type: typ, Timestamp: time.Now().UTC(), Metadata: raw, Location: b.location, Project: project}, Requestor: requestor}
	var slow []*Listener
	b.mu.RLock()
	for l := range b.listeners {
		if l.filter != nil && !l.filter(&ev) {
			continue
		}
		select {
		case l.C <- ev:
		default:
			slow = append(slow, l)
		}
	}
	b.mu.RUnlock()
	for _, l := range slow {
		b.Unsubscribe(l)
	}
}

// Close drops every listener.
func (b *Bus) Close() {
	b.mu.Lock()
	for l := range b.listeners {
		delete(b.listeners, l)
		l.close()
	}
	b.mu.Unlock()
}

// Lifecycle publishes a lifecycle event: action on the object at source.
func (b *Bus) Lifecycle(action, source, project string, requestor *api.Requestor, ctx map[string]any) {
	b.Publish(api.EventTypeLifecycle, project, requestor, api.EventLifecycle{
		Action: action, Source: source, Context: ctx, Requestor: requestor,
	})
}
