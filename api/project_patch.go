package api

// ProjectPatch is a PATCH /1.0/projects/{name} body: a nil Description
// keeps the current one, and a config key set to "" is removed.
type ProjectPatch struct {
	Description *string           `json:"description,omitempty" yaml:"description,omitempty"`
	Config      map[string]string `json:"config,omitempty" yaml:"config,omitempty"`
}
