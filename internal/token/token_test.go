package token

import (
	"encoding/base64"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

// A token minted by LXD 5.0.x for "lxc remote add"; the round trip through
// Decode and Encode must reproduce it byte for byte.
const lxdToken = "eyJjbGllbnRfbmFtZSI6ImN1cmxjbGkiLCJmaW5nZXJwcmludCI6ImEzZDZiNmQ2YTVkMWJmNmVjOTk2OGI4YWY0ZDg4ZDI2ZjE2M2E0Zjg5ZmFmZmU5N2Q5NjRhMjIzZmYwNzExNjQiLCJhZGRyZXNzZXMiOlsiMTcyLjE2LjAuMTo4NDQzIiwiWzE1MDk6MTIzMTphOjE6OjFdOjg0NDMiXSwic2VjcmV0IjoiNDJhN2VkY2U1ZjQ1YTRlNjI5NDM3ZTA2MTM3NmE5OTY5ZGIzZDQ2NWZmM2MwMDQ1Yzk0MmRhMDM3MDlmMGIzNSIsImV4cGlyZXNfYXQiOiIwMDAxLTAxLTAxVDAwOjAwOjAwWiIsInR5cGUiOiIifQ=="

// The same shape without the "type" field, as sent by the 5.0.2 client in
// the password field (see lxd-wire/token-redeem-client-sequence.txt).
const lxdTokenNoType = "eyJjbGllbnRfbmFtZSI6ImRiZyIsImZpbmdlcnByaW50IjoiMTAyMGRhYzgxMzhhM2Q5Y2NhNjM1NTYyMWNhNTliMWViNDk3MTM2YzhlNzcyNDJlMGY3NzAxOGQxZDk0M2IxMSIsImFkZHJlc3NlcyI6WyIxMjcuMC4wLjE6ODQ0MyJdLCJzZWNyZXQiOiIxNDJkNzFkODNmNmFlMDY0ZTdhNzYwMTcwNjlhZmQyMTVlZmJiYjEzOWYzMjU0NTIzZjMxZGY0Nzk4ZjU5MTFiIiwiZXhwaXJlc19hdCI6IjAwMDEtMDEtMDFUMDA6MDA6MDBaIn0="

func TestDecodeLXDToken(t *testing.T) {
	tok, err := Decode(lxdToken)
	if err != nil {
		t.Fatal(err)
	}
	want := Token{
		ClientName:  "curlcli",
		Fingerprint: "a3d6b6d6a5d1bf6ec9968b8af4d88d26f163a4f89faffe97d964a223ff071164",
		Addresses:   []string{"172.16.0.1:8443", "[1509:1231:a:1::1]:8443"},
		Secret:      "42a7edce5f45a4e629437e061376a9969db3d465ff3c0045c942da03709f0b35",
		Type:        TypeCertificate,
	}
	if !reflect.DeepEqual(tok, want) {
		t.Fatalf("Decode = %+v, want %+v", tok, want)
	}
	got, err := Encode(tok)
	if err != nil {
		t.Fatal(err)
	}
	if got != lxdToken {
		t.Errorf("Encode(Decode(lxd token)) differs:\n got %s\nwant %s", got, lxdToken)
	}
}

func TestDecodeWithoutTypeAndWhitespace(t *testing.T) {
	tok, err := Decode("\n  " + lxdTokenNoType + " \r\n")
	if err != nil {
		t.Fatal(err)
	}
	if tok.ClientName != "dbg" || tok.Type != TypeCertificate || tok.Expired(time.Now()) {
		t.Errorf("Decode = %+v", tok)
	}
}

func TestEncodeExpiry(t *testing.T) {
	tok := Token{
		ClientName:  "c",
		Fingerprint: "ff",
		Addresses:   []string{"127.0.0.1:8443"},
		Secret:      NewSecret(),
		ExpiresAt:   time.Date(2026, 11, 22, 12, 51, 52, 0, time.UTC),
		Type:        TypeIdentity,
	}
	s, err := Encode(tok)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := base64.StdEncoding.DecodeString(s)
	wantJSON := `{"client_name":"c","fingerprint":"ff","addresses":["127.0.0.1:8443"],"secret":"` + tok.Secret +
		`","expires_at":"2026-11-22T12:51:52Z","type":"Client certificate"}`
	if string(raw) != wantJSON {
		t.Errorf("JSON = %s\nwant   %s", raw, wantJSON)
	}
	back, err := Decode(s)
	if err != nil {
		t.Fatal(err)
	}
	if !back.ExpiresAt.Equal(tok.ExpiresAt) || back.Type != TypeIdentity {
		t.Errorf("round trip = %+v", back)
	}
	if back.Expired(tok.ExpiresAt.Add(-time.Second)) || !back.Expired(tok.ExpiresAt) {
		t.Error("Expired boundary wrong: a token is expired from ExpiresAt on")
	}
}

func TestDecodeRejects(t *testing.T) {
	b64 := func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
	tests := map[string]string{
		"empty":           "",
		"not base64":      "not a token!",
		"url alphabet":    strings.NewReplacer("+", "-", "/", "_").Replace(b64(`{"client_name":"a>?","fingerprint":"f","addresses":["a"],"secret":"s"}`)),
		"missing padding": strings.TrimRight(lxdToken, "="),
		"not json":        b64("hello"),
		"json array":      b64(`[1,2]`),
		"no client name":  b64(`{"fingerprint":"f","addresses":["a"],"secret":"s"}`),
		"no addresses":    b64(`{"client_name":"c","fingerprint":"f","addresses":[],"secret":"s"}`),
		"no secret":       b64(`{"client_name":"c","fingerprint":"f","addresses":["a"]}`),
		"no fingerprint":  b64(`{"client_name":"c","addresses":["a"],"secret":"s"}`),
		"cluster join":    b64(`{"server_name":"m2","fingerprint":"f","addresses":["a"],"secret":"s"}`),
		"bad expiry":      b64(`{"client_name":"c","fingerprint":"f","addresses":["a"],"secret":"s","expires_at":"tomorrow"}`),
		"too long":        strings.Repeat("A", maxEncodedLen+4),
	}
	for name, in := range tests {
		if _, err := Decode(in); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: Decode err = %v, want ErrInvalid", name, err)
		}
	}
}

func TestEncodeRejectsIncomplete(t *testing.T) {
	if _, err := Encode(Token{ClientName: "c", Addresses: []string{"a"}, Secret: "s"}); !errors.Is(err, ErrInvalid) {
		t.Errorf("Encode without fingerprint: err = %v", err)
	}
}

func TestNewSecret(t *testing.T) {
	a, b := NewSecret(), NewSecret()
	if len(a) != 64 || strings.Trim(a, "0123456789abcdef") != "" {
		t.Errorf("NewSecret = %q, want 64 lower-case hex chars", a)
	}
	if a == b {
		t.Error("two secrets are equal")
	}
}

func TestSecretsEqual(t *testing.T) {
	s := NewSecret()
	tests := []struct {
		a, b string
		want bool
	}{
		{s, s, true},
		{s, strings.ToUpper(s), false},
		{s, s[:63], false},
		{s, s + "0", false},
		{"", "", false},
		{s, "", false},
	}
	for _, tt := range tests {
		if got := SecretsEqual(tt.a, tt.b); got != tt.want {
			t.Errorf("SecretsEqual(%q, %q) = %v", tt.a, tt.b, got)
		}
	}
}

func FuzzDecode(f *testing.F) {
	f.Add(lxdToken)
	f.Add(lxdTokenNoType)
	f.Add("")
	f.Add("e30=")
	f.Fuzz(func(t *testing.T, s string) {
		tok, err := Decode(s)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("Decode(%q) error %v does not wrap ErrInvalid", s, err)
			}
			return
		}
		// Anything Decode accepts must survive a round trip unchanged.
		enc, err := Encode(tok)
		if err != nil {
			t.Fatalf("Encode(Decode(%q)): %v", s, err)
		}
		back, err := Decode(enc)
		if err != nil {
			t.Fatalf("Decode(Encode(%+v)): %v", tok, err)
		}
		if !back.ExpiresAt.Equal(tok.ExpiresAt) {
			t.Fatalf("expiry changed in round trip: %v -> %v", tok.ExpiresAt, back.ExpiresAt)
		}
		back.ExpiresAt = tok.ExpiresAt
		if !reflect.DeepEqual(back, tok) {
			t.Fatalf("round trip changed token: %+v -> %+v", tok, back)
		}
	})
}

func BenchmarkDecode(b *testing.B) {
	for b.Loop() {
		if _, err := Decode(lxdToken); err != nil {
			b.Fatal(err)
		}
	}
}
