package api

// ProjectPut is the writable part of a project.
type ProjectPut struct {
	Description string            `json:"description" yaml:"description"`
	Config      map[string]string `json:"config" yaml:"config"`
}

// ProjectsPost creates a project.
type ProjectsPost struct {
	ProjectPut `yaml:",inline"`
	Name       string `json:"name" yaml:"name"`
}

// ProjectPost renames a project.
type ProjectPost struct {
	Name string `json:"name" yaml:"name"`
}

// Project is a project as shown by GET /1.0/projects/{name}.
type Project struct {
	ProjectPut `yaml:",inline"`
	Name       string   `json:"name" yaml:"name"`
	UsedBy     []string `json:"used_by" yaml:"used_by"`
}

// ProjectState is GET /1.0/projects/{name}/state.
type ProjectState struct {
	Resources map[string]ProjectStateResource `json:"resources" yaml:"resources"`
}

// ProjectStateResource is the usage of one limited resource; Limit -1 means
// no limit.
type ProjectStateResource struct {
	Limit int64 `json:"Limit" yaml:"limit"`
	Usage int64 `json:"Usage" yaml:"usage"`
}
