package event

import (
	"testing"

	"github.com/moat/moat/api"
)

func TestPublishFilters(t *testing.T) {
	b := NewBus("none")
	all := b.Subscribe(nil)
	p1 := b.Subscribe(func(ev *Event) bool { return ev.Project == "p1" })
	b.Lifecycle("project-created", "/1.0/projects/x", "", &api.Requestor{Username: "root"}, nil)
	b.Lifecycle("instance-created", "/1.0/instances/c", "p1", nil, map[string]any{"type": "container"})
	if len(all.C) != 2 || len(p1.C) != 1 {
		t.Fatalf("all got %d, p1 got %d", len(all.C), len(p1.C))
	}
	ev := <-p1.C
	if ev.Type != "lifecycle" || ev.Location != "none" || ev.Project != "p1" || ev.Timestamp.IsZero() {
		t.Fatalf("event = %+v", ev)
	}
}

func TestSlowListenerDropped(t *testing.T) {
	b := NewBus("none")
	slow := b.Subscribe(nil)
	for i := 0; i < cap(slow.C)+1; i++ {
		b.Publish(api.EventTypeLogging, "", nil, api.EventLogging{Message: "x"})
	}
	select {
	case <-slow.Done():
	default:
		t.Fatal("a listener that stopped reading was kept")
	}
	if b.HasListeners() {
		t.Fatal("dropped listener still registered")
	}
}
