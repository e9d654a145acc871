// Package api holds Moat's wire types: the JSON shapes of LXD's REST API
// (/1.0) that Moat implements. It is shared by the daemon and the client and
// contains no logic beyond (de)serialisation.
package api

import "encoding/json"

// ResponseType is the "type" field of every response envelope.
type ResponseType string

// Envelope types.
const (
	SyncResponse  ResponseType = "sync"
	AsyncResponse ResponseType = "async"
	ErrorResponse ResponseType = "error"
)

// Response is the envelope every endpoint answers with. All seven keys are
// always serialised: LXD clients expect them.
type Response struct {
	Type       ResponseType    `json:"type"`
	Status     string          `json:"status"`
	StatusCode int             `json:"status_code"`
	Operation  string          `json:"operation"`
	ErrorCode  int             `json:"error_code"`
	Error      string          `json:"error"`
	Metadata   json.RawMessage `json:"metadata"`
}

// ResponseRaw is Response with metadata left as any value, for encoding.
type ResponseRaw struct {
	Type       ResponseType `json:"type"`
	Status     string       `json:"status"`
	StatusCode int          `json:"status_code"`
	Operation  string       `json:"operation"`
	ErrorCode  int          `json:"error_code"`
	Error      string       `json:"error"`
	Metadata   any          `json:"metadata"`
}

// StatusCode is one of LXD's numeric operation and response states.
type StatusCode int

// The stable numeric states (spec 1.4).
const (
	OperationCreated StatusCode = 100
	Started          StatusCode = 101
	Stopped          StatusCode = 102
	Running          StatusCode = 103
	Cancelling       StatusCode = 104
	Pending          StatusCode = 105
	Starting         StatusCode = 106
	Stopping         StatusCode = 107
	Aborting         StatusCode = 108
	Freezing         StatusCode = 109
	Frozen           StatusCode = 110
	Thawed           StatusCode = 111
	Error            StatusCode = 112
	Ready            StatusCode = 113
	Success          StatusCode = 200
	Failure          StatusCode = 400
	Cancelled        StatusCode = 401
)

var statusText = map[StatusCode]string{
	OperationCreated: "Operation created",
	Started:          "Started",
	Stopped:          "Stopped",
	Running:          "Running",
	Cancelling:       "Cancelling",
	Pending:          "Pending",
	Starting:         "Starting",
	Stopping:         "Stopping",
	Aborting:         "Aborting",
	Freezing:         "Freezing",
	Frozen:           "Frozen",
	Thawed:           "Thawed",
	Error:            "Error",
	Ready:            "Ready",
	Success:          "Success",
	Failure:          "Failure",
	Cancelled:        "Cancelled",
}

// String returns the state's text as LXD spells it.
func (s StatusCode) String() string { return statusText[s] }

// IsFinal reports whether an operation in this state will not change again.
func (s StatusCode) IsFinal() bool { return s == Success || s == Failure || s == Cancelled }
