package api

import "time"

// InstanceSource is where a new instance comes from.
type InstanceSource struct {
	Type        string `json:"type" yaml:"type"`
	Alias       string `json:"alias,omitempty" yaml:"alias,omitempty"`
	Fingerprint string `json:"fingerprint,omitempty" yaml:"fingerprint,omitempty"`
	Server      string `json:"server,omitempty" yaml:"server,omitempty"`
	Protocol    string `json:"protocol,omitempty" yaml:"protocol,omitempty"`
	Project     string `json:"project,omitempty" yaml:"project,omitempty"`
}

// InstancePut is the writable part of an instance.
type InstancePut struct {
	Architecture string                       `json:"architecture" yaml:"architecture"`
	Config       map[string]string            `json:"config" yaml:"config"`
	Devices      map[string]map[string]string `json:"devices" yaml:"devices"`
	Ephemeral    bool                         `json:"ephemeral" yaml:"ephemeral"`
	Profiles     []string                     `json:"profiles" yaml:"profiles"`
	Stateful     bool                         `json:"stateful" yaml:"stateful"`
	Description  string                       `json:"description" yaml:"description"`
}

// InstancesPost creates an instance.
type InstancesPost struct {
	InstancePut `yaml:",inline"`
	Name        string         `json:"name" yaml:"name"`
	Source      InstanceSource `json:"source" yaml:"source"`
	Type        string         `json:"type" yaml:"type"`
	Start       bool           `json:"start" yaml:"start"`
}

// InstancePost renames an instance.
type InstancePost struct {
	Name      string `json:"name" yaml:"name"`
	Migration bool   `json:"migration" yaml:"migration"`
}

// Instance is GET /1.0/instances/{name}.
type Instance struct {
	InstancePut     `yaml:",inline"`
	CreatedAt       time.Time                    `json:"created_at" yaml:"created_at"`
	ExpandedConfig  map[string]string            `json:"expanded_config" yaml:"expanded_config"`
	ExpandedDevices map[string]map[string]string `json:"expanded_devices" yaml:"expanded_devices"`
	Name            string                       `json:"name" yaml:"name"`
	Status          string                       `json:"status" yaml:"status"`
	StatusCode      StatusCode                   `json:"status_code" yaml:"status_code"`
	LastUsedAt      time.Time                    `json:"last_used_at" yaml:"last_used_at"`
	Location        string                       `json:"location" yaml:"location"`
	Type            string                       `json:"type" yaml:"type"`
	Project         string                       `json:"project" yaml:"project"`
}

// InstanceFull is recursion=2.
type InstanceFull struct {
	Instance  `yaml:",inline"`
	Backups   []any          `json:"backups" yaml:"backups"`
	State     *InstanceState `json:"state" yaml:"state"`
	Snapshots []any          `json:"snapshots" yaml:"snapshots"`
}

// InstanceState is GET /1.0/instances/{name}/state.
type InstanceState struct {
	Status     string                          `json:"status" yaml:"status"`
	StatusCode StatusCode                      `json:"status_code" yaml:"status_code"`
	Disk       map[string]InstanceStateDisk    `json:"disk" yaml:"disk"`
	Memory     InstanceStateMemory             `json:"memory" yaml:"memory"`
	Network    map[string]InstanceStateNetwork `json:"network" yaml:"network"`
	Pid        int64                           `json:"pid" yaml:"pid"`
	Processes  int64                           `json:"processes" yaml:"processes"`
	CPU        InstanceStateCPU                `json:"cpu" yaml:"cpu"`
}

// InstanceStateDisk is disk usage.
type InstanceStateDisk struct {
	Usage int64 `json:"usage" yaml:"usage"`
}

// InstanceStateMemory is memory usage.
type InstanceStateMemory struct {
	Usage         int64 `json:"usage" yaml:"usage"`
	UsagePeak     int64 `json:"usage_peak" yaml:"usage_peak"`
	SwapUsage     int64 `json:"swap_usage" yaml:"swap_usage"`
	SwapUsagePeak int64 `json:"swap_usage_peak" yaml:"swap_usage_peak"`
}

// InstanceStateCPU is CPU usage in nanoseconds.
type InstanceStateCPU struct {
	Usage int64 `json:"usage" yaml:"usage"`
}

// InstanceStateNetwork is one interface.
type InstanceStateNetwork struct {
	Addresses []InstanceStateNetworkAddress `json:"addresses" yaml:"addresses"`
	Counters  map[string]int64              `json:"counters" yaml:"counters"`
	Hwaddr    string                        `json:"hwaddr" yaml:"hwaddr"`
	HostName  string                        `json:"host_name" yaml:"host_name"`
	Mtu       int                           `json:"mtu" yaml:"mtu"`
	State     string                        `json:"state" yaml:"state"`
	Type      string                        `json:"type" yaml:"type"`
}

// InstanceStateNetworkAddress is one address.
type InstanceStateNetworkAddress struct {
	Family  string `json:"family" yaml:"family"`
	Address string `json:"address" yaml:"address"`
	Netmask string `json:"netmask" yaml:"netmask"`
	Scope   string `json:"scope" yaml:"scope"`
}

// InstanceStatePut is PUT /1.0/instances/{name}/state.
type InstanceStatePut struct {
	Action   string `json:"action" yaml:"action"`
	Timeout  int    `json:"timeout" yaml:"timeout"`
	Force    bool   `json:"force" yaml:"force"`
	Stateful bool   `json:"stateful" yaml:"stateful"`
}

// InstanceExecPost is POST /1.0/instances/{name}/exec.
type InstanceExecPost struct {
	Command          []string          `json:"command" yaml:"command"`
	WaitForWebsocket bool              `json:"wait-for-websocket" yaml:"wait-for-websocket"`
	Interactive      bool              `json:"interactive" yaml:"interactive"`
	Environment      map[string]string `json:"environment" yaml:"environment"`
	Width            int               `json:"width" yaml:"width"`
	Height           int               `json:"height" yaml:"height"`
	RecordOutput     bool              `json:"record-output" yaml:"record-output"`
	User             uint32            `json:"user" yaml:"user"`
	Group            uint32            `json:"group" yaml:"group"`
	Cwd              string            `json:"cwd" yaml:"cwd"`
}

// ExecControl is a control-channel message.
type ExecControl struct {
	Command string            `json:"command"`
	Args    map[string]string `json:"args"`
	Signal  int               `json:"signal"`
}

// ImagePut is the writable part of an image.
type ImagePut struct {
	AutoUpdate bool              `json:"auto_update" yaml:"auto_update"`
	Properties map[string]string `json:"properties" yaml:"properties"`
	Public     bool              `json:"public" yaml:"public"`
	ExpiresAt  time.Time         `json:"expires_at" yaml:"expires_at"`
	Profiles   []string          `json:"profiles" yaml:"profiles"`
}

// ImageAliasesEntry is an alias as listed in an image.
type ImageAliasesEntry struct {
	Name        string `json:"name" yaml:"name"`
	Description string `json:"description" yaml:"description"`
}

// Image is GET /1.0/images/{fingerprint}.
type Image struct {
	ImagePut     `yaml:",inline"`
	Aliases      []ImageAliasesEntry `json:"aliases" yaml:"aliases"`
	Architecture string              `json:"architecture" yaml:"architecture"`
	Cached       bool                `json:"cached" yaml:"cached"`
	Filename     string              `json:"filename" yaml:"filename"`
	Fingerprint  string              `json:"fingerprint" yaml:"fingerprint"`
	Size         int64               `json:"size" yaml:"size"`
	Type         string              `json:"type" yaml:"type"`
	CreatedAt    time.Time           `json:"created_at" yaml:"created_at"`
	LastUsedAt   time.Time           `json:"last_used_at" yaml:"last_used_at"`
	UploadedAt   time.Time           `json:"uploaded_at" yaml:"uploaded_at"`
}

// ImageAliasesPost creates an alias.
type ImageAliasesPost struct {
	Name        string `json:"name" yaml:"name"`
	Description string `json:"description" yaml:"description"`
	Target      string `json:"target" yaml:"target"`
	Type        string `json:"type" yaml:"type"`
}

// ImageAliasesEntryPut is the writable part of an alias.
type ImageAliasesEntryPut struct {
	Description string `json:"description" yaml:"description"`
	Target      string `json:"target" yaml:"target"`
}

// ImageAlias is GET /1.0/images/aliases/{name}.
type ImageAlias struct {
	Name        string `json:"name" yaml:"name"`
	Description string `json:"description" yaml:"description"`
	Target      string `json:"target" yaml:"target"`
	Type        string `json:"type" yaml:"type"`
}

// ProfilePut is the writable part of a profile.
type ProfilePut struct {
	Config      map[string]string            `json:"config" yaml:"config"`
	Description string                       `json:"description" yaml:"description"`
	Devices     map[string]map[string]string `json:"devices" yaml:"devices"`
}

// ProfilesPost creates a profile.
type ProfilesPost struct {
	ProfilePut `yaml:",inline"`
	Name       string `json:"name" yaml:"name"`
}

// Profile is GET /1.0/profiles/{name}.
type Profile struct {
	ProfilePut `yaml:",inline"`
	Name       string   `json:"name" yaml:"name"`
	UsedBy     []string `json:"used_by" yaml:"used_by"`
	Project    string   `json:"project,omitempty" yaml:"project,omitempty"`
}

// StoragePool is GET /1.0/storage-pools/{name}.
type StoragePool struct {
	Config      map[string]string `json:"config" yaml:"config"`
	Description string            `json:"description" yaml:"description"`
	Name        string            `json:"name" yaml:"name"`
	Driver      string            `json:"driver" yaml:"driver"`
	UsedBy      []string          `json:"used_by" yaml:"used_by"`
	Status      string            `json:"status" yaml:"status"`
	Locations   []string          `json:"locations" yaml:"locations"`
}
