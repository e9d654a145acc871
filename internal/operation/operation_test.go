package operation

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/moat/moat/api"
	"github.com/moat/moat/internal/event"
	"github.com/moat/moat/internal/identity"
)

var (
	admin   = &identity.Identity{Kind: identity.UnixAdmin, Username: "root", Protocol: "unix"}
	creator = &identity.Identity{Kind: identity.TLSRestricted, Username: "aaa", Protocol: "tls", Projects: []string{"p"}}
	other   = &identity.Identity{Kind: identity.TLSRestricted, Username: "bbb", Protocol: "tls", Projects: []string{"p"}}
)

func TestTaskLifecycle(t *testing.T) {
	bus := event.NewBus("none")
	l := bus.Subscribe(nil)
	m := NewManager(bus)
	release := make(chan struct{})
	op, err := m.Create(Args{Class: api.OperationClassTask, Project: "p", Creator: creator,
		Run: func(ctx context.Context, op *Operation) error { <-release; return errors.New("it broke") }})
	if err != nil {
		t.Fatal(err)
	}
	op.Start()
	if op.Wait(context.Background(), 10*time.Millisecond) {
		t.Fatal("operation final before its work finished")
	}
	close(release)
	if !op.Wait(context.Background(), 5*time.Second) {
		t.Fatal("operation never finished")
	}
	v := op.Render(admin)
	if v.StatusCode != api.Failure || v.Err != "it broke" || v.Requestor.Username != "aaa" {
		t.Fatalf("final view = %+v", v)
	}
	var states []string
	for len(l.C) > 0 {
		ev := <-l.C
		if ev.Type != api.EventTypeOperation || ev.Project != "p" {
			t.Fatalf("event %+v", ev)
		}
		states = append(states, string(ev.Metadata))
	}
	if len(states) != 2 {
		t.Fatalf("want Running and Failure events, got %d", len(states))
	}
}

func TestCancel(t *testing.T) {
	m := NewManager(event.NewBus("none"))
	op, _ := m.Create(Args{Class: api.OperationClassTask, MayCancel: true,
		Run: func(ctx context.Context, _ *Operation) error { <-ctx.Done(); return ctx.Err() }})
	op.Start()
	if err := op.Cancel(); err != nil {
		t.Fatal(err)
	}
	op.Wait(context.Background(), 5*time.Second)
	if s := op.Render(admin).StatusCode; s != api.Cancelled {
		t.Fatalf("status after cancel = %v", s)
	}
	if err := op.Cancel(); err == nil {
		t.Fatal("cancelling a finished operation succeeded")
	}
	fixed, _ := m.Create(Args{Class: api.OperationClassTask, Run: func(ctx context.Context, _ *Operation) error { <-ctx.Done(); return nil }})
	fixed.Start()
	if err := fixed.Cancel(); err == nil {
		t.Fatal("an operation without may_cancel was cancelled")
	}
	m.Shutdown(5 * time.Second)
	if !fixed.Wait(context.Background(), 0) {
		t.Fatal("shutdown did not end running work")
	}
}

func TestSecretsOnlyForCreatorAndAdmins(t *testing.T) {
	bus := event.NewBus("none")
	l := bus.Subscribe(nil)
	m := NewManager(bus)
	op, _ := m.Create(Args{Class: api.OperationClassToken, Project: "p", Creator: creator, MayCancel: true,
		Metadata: map[string]any{"secret": "s3cr3t", "fingerprint": "fp"}, SecretKeys: []string{"secret"}})
	op.Start()
	for _, c := range []struct {
		who  *identity.Identity
		sees bool
	}{{admin, true}, {creator, true}, {other, false}, {nil, false}} {
		_, has := op.Render(c.who).Metadata["secret"]
		if has != c.sees {
			t.Errorf("viewer %+v sees secret: %v", c.who, has)
		}
		if op.Render(c.who).Metadata["fingerprint"] != "fp" {
			t.Errorf("viewer %+v lost non-secret metadata", c.who)
		}
	}
	ev := <-l.C
	if string(ev.Metadata) == "" || strings.Contains(string(ev.Metadata), "s3cr3t") {
		t.Fatalf("operation event leaks the secret: %s", ev.Metadata)
	}
}

func TestWebsocketSecret(t *testing.T) {
	m := NewManager(event.NewBus("none"))
	op, _ := m.Create(Args{Class: api.OperationClassWebsocket, WebsocketSecrets: []string{"aaaa", "bbbb"}})
	for s, want := range map[string]bool{"aaaa": true, "bbbb": true, "aaab": false, "": false, "aaaaa": false} {
		if got := op.CheckWebsocketSecret(s); got != want {
			t.Errorf("CheckWebsocketSecret(%q) = %v", s, got)
		}
	}
}
