package api

// Requestor says who caused an operation or event.
type Requestor struct {
	Username string `json:"username"`
	Protocol string `json:"protocol"`
	Address  string `json:"address"`
}

// ServerPut is the writable part of GET /1.0.
type ServerPut struct {
	Config map[string]string `json:"config"`
}

// ServerUntrusted is what GET /1.0 shows to every caller.
type ServerUntrusted struct {
	APIExtensions     []string `json:"api_extensions"`
	APIStatus         string   `json:"api_status"`
	APIVersion        string   `json:"api_version"`
	Auth              string   `json:"auth"`
	Public            bool     `json:"public"`
	AuthMethods       []string `json:"auth_methods"`
	ClientCertificate bool     `json:"client_certificate"`
}

// StorageDriverInfo describes a storage driver. LXD serialises it without
// JSON tags, so the keys are capitalised on the wire.
type StorageDriverInfo struct {
	Name    string
	Version string
	Remote  bool
}

// ServerEnvironment is the environment section of GET /1.0.
type ServerEnvironment struct {
	Addresses               []string            `json:"addresses"`
	Architectures           []string            `json:"architectures"`
	Certificate             string              `json:"certificate"`
	CertificateFingerprint  string              `json:"certificate_fingerprint"`
	Driver                  string              `json:"driver"`
	DriverVersion           string              `json:"driver_version"`
	Firewall                string              `json:"firewall"`
	Kernel                  string              `json:"kernel"`
	KernelArchitecture      string              `json:"kernel_architecture"`
	KernelFeatures          map[string]string   `json:"kernel_features"`
	KernelVersion           string              `json:"kernel_version"`
	LXCFeatures             map[string]string   `json:"lxc_features"`
	OSName                  string              `json:"os_name"`
	OSVersion               string              `json:"os_version"`
	Project                 string              `json:"project"`
	Server                  string              `json:"server"`
	ServerClustered         bool                `json:"server_clustered"`
	ServerEventMode         string              `json:"server_event_mode"`
	ServerName              string              `json:"server_name"`
	ServerPid               int                 `json:"server_pid"`
	ServerVersion           string              `json:"server_version"`
	Storage                 string              `json:"storage"`
	StorageVersion          string              `json:"storage_version"`
	StorageSupportedDrivers []StorageDriverInfo `json:"storage_supported_drivers"`
}

// Server is GET /1.0 for a trusted caller.
type Server struct {
	Config map[string]string `json:"config"`
	ServerUntrusted
	AuthUserName   string            `json:"auth_user_name,omitempty"`
	AuthUserMethod string            `json:"auth_user_method,omitempty"`
	Environment    ServerEnvironment `json:"environment"`
}
