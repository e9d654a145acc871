package api

import (
	"encoding/json"
	"time"
)

// Event types.
const (
	EventTypeLifecycle = "lifecycle"
	EventTypeLogging   = "logging"
	EventTypeOperation = "operation"
	EventTypeSecurity  = "security"
)

// Event is one frame of /1.0/events.
type Event struct {
	Type      string          `json:"type" yaml:"type"`
	Timestamp time.Time       `json:"timestamp" yaml:"timestamp"`
	Metadata  json.RawMessage `json:"metadata" yaml:"metadata"`
	Location  string          `json:"location,omitempty" yaml:"location,omitempty"`
	Project   string          `json:"project,omitempty" yaml:"project,omitempty"`
}

// EventLifecycle is the metadata of a lifecycle event.
type EventLifecycle struct {
	Action    string         `json:"action" yaml:"action"`
	Source    string         `json:"source" yaml:"source"`
	Context   map[string]any `json:"context,omitempty" yaml:"context,omitempty"`
	Requestor *Requestor     `json:"requestor,omitempty" yaml:"requestor,omitempty"`
	Name      string         `json:"name,omitempty" yaml:"name,omitempty"`
	Project   string         `json:"project,omitempty" yaml:"project,omitempty"`
}

// EventLogging is the metadata of a logging event.
type EventLogging struct {
	Message string            `json:"message" yaml:"message"`
	Level   string            `json:"level" yaml:"level"`
	Context map[string]string `json:"context" yaml:"context"`
}

// EventSecurity is the metadata of a security event.
type EventSecurity struct {
	Name          string     `json:"name" yaml:"name"`
	Level         string     `json:"level" yaml:"level"`
	Description   string     `json:"description" yaml:"description"`
	Requestor     *Requestor `json:"requestor,omitempty" yaml:"requestor,omitempty"`
	Project       string     `json:"project,omitempty" yaml:"project,omitempty"`
	RequestPath   string     `json:"request_path,omitempty" yaml:"request_path,omitempty"`
	RequestMethod string     `json:"request_method,omitempty" yaml:"request_method,omitempty"`
}
