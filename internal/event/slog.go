package event

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/moat/moat/api"
)

// LogHandler is a slog.Handler that forwards records to the bus as logging
// events, alongside the daemon's own log output.
type LogHandler struct {
	next  slog.Handler
	bus   *Bus
	attrs []slog.Attr
}

// NewLogHandler wraps next so that records also become logging events.
func NewLogHandler(next slog.Handler, bus *Bus) *LogHandler {
	return &LogHandler{next: next, bus: bus}
}

// Enabled reports whether either the log output or a listener wants level.
func (h *LogHandler) Enabled(ctx context.Context, level slog.Level) bool {
	// Listeners may ask for debug events even when the log file does not.
	return h.next.Enabled(ctx, level) || h.bus.HasListeners()
}

// Handle writes the record and publishes it.
func (h *LogHandler) Handle(ctx context.Context, r slog.Record) error {
	var err error
	if h.next.Enabled(ctx, r.Level) {
		err = h.next.Handle(ctx, r)
	}
	if h.bus.HasListeners() {
		c := map[string]string{}
		for _, a := range h.attrs {
			c[a.Key] = a.Value.String()
		}
		r.Attrs(func(a slog.Attr) bool {
			c[a.Key] = fmt.Sprint(a.Value.Any())
			return true
		})
		h.bus.Publish(api.EventTypeLogging, "", nil, api.EventLogging{
			Message: r.Message, Level: levelName(r.Level), Context: c,
		})
	}
	return err
}

// WithAttrs returns a handler with extra attributes.
func (h *LogHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return &LogHandler{next: h.next.WithAttrs(attrs), bus: h.bus, attrs: append(append([]slog.Attr{}, h.attrs...), attrs...)}
}

// WithGroup returns a handler with a group.
func (h *LogHandler) WithGroup(name string) slog.Handler {
	return &LogHandler{next: h.next.WithGroup(name), bus: h.bus, attrs: h.attrs}
}

func levelName(l slog.Level) string {
	switch {
	case l >= slog.LevelError:
		return "error"
	case l >= slog.LevelWarn:
		return "warning"
	case l >= slog.LevelInfo:
		return "info"
	}
	return "debug"
}
