package api

import "time"

// Operation classes.
const (
	OperationClassTask      = "task"
	OperationClassWebsocket = "websocket"
	OperationClassToken     = "token"
)

// Operation is a background operation.
type Operation struct {
	ID          string              `json:"id" yaml:"id"`
	Class       string              `json:"class" yaml:"class"`
	Description string              `json:"description" yaml:"description"`
	CreatedAt   time.Time           `json:"created_at" yaml:"created_at"`
	UpdatedAt   time.Time           `json:"updated_at" yaml:"updated_at"`
	Status      string              `json:"status" yaml:"status"`
	StatusCode  StatusCode          `json:"status_code" yaml:"status_code"`
	Resources   map[string][]string `json:"resources" yaml:"resources"`
	Metadata    map[string]any      `json:"metadata" yaml:"metadata"`
	MayCancel   bool                `json:"may_cancel" yaml:"may_cancel"`
	Err         string              `json:"err" yaml:"err"`
	Location    string              `json:"location" yaml:"location"`
	Requestor   *Requestor          `json:"requestor,omitempty" yaml:"requestor,omitempty"`
}
