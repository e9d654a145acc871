package api

// Certificate is a trust store entry (GET /1.0/certificates/{fingerprint}).
type Certificate struct {
	Name        string   `json:"name" yaml:"name"`
	Type        string   `json:"type" yaml:"type"`
	Restricted  bool     `json:"restricted" yaml:"restricted"`
	Projects    []string `json:"projects" yaml:"projects"`
	Certificate string   `json:"certificate" yaml:"certificate"` // PEM
	Fingerprint string   `json:"fingerprint" yaml:"fingerprint"`
}

// CertificatePut is the writable part of a Certificate.
type CertificatePut struct {
	Name        string   `json:"name" yaml:"name"`
	Type        string   `json:"type" yaml:"type"`
	Restricted  bool     `json:"restricted" yaml:"restricted"`
	Projects    []string `json:"projects" yaml:"projects"`
	Certificate string   `json:"certificate" yaml:"certificate"`
}

// CertificatesPost adds a certificate (POST /1.0/certificates): by
// certificate (base64 DER, or the caller's TLS certificate), by redeeming
// a trust token (TrustToken, or the whole token in Password as LXD 5.0.2
// clients send it), by the legacy trust password, or, with Token, asks for
// a new trust token.
type CertificatesPost struct {
	Name        string   `json:"name" yaml:"name"`
	Type        string   `json:"type" yaml:"type"`
	Restricted  bool     `json:"restricted" yaml:"restricted"`
	Projects    []string `json:"projects" yaml:"projects"`
	Certificate string   `json:"certificate" yaml:"certificate"`
	Password    string   `json:"password,omitempty" yaml:"password,omitempty"`
	TrustToken  string   `json:"trust_token,omitempty" yaml:"trust_token,omitempty"`
	Token       bool     `json:"token" yaml:"token"`
}

// CertificateAddToken is the metadata of a token operation.
type CertificateAddToken struct {
	ClientName  string   `json:"client_name"`
	Fingerprint string   `json:"fingerprint"`
	Addresses   []string `json:"addresses"`
	Secret      string   `json:"secret"`
	ExpiresAt   string   `json:"expires_at"`
}
