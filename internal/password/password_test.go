package password

import (
	"errors"
	"strings"
	"testing"
)

func TestHashVerify(t *testing.T) {
	h, err := Hash("correct horse")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(h, "$argon2id$v=19$m=19456,t=2,p=1$") {
		t.Errorf("Hash = %q, want argon2id PHC string with default parameters", h)
	}
	if strings.Contains(h, "correct horse") {
		t.Error("hash contains the password")
	}
	for pw, want := range map[string]bool{
		"correct horse":  true,
		"correct horse ": false,
		"Correct horse":  false,
		"correct hors":   false,
	} {
		ok, err := Verify(h, pw)
		if err != nil {
			t.Fatalf("Verify(%q): %v", pw, err)
		}
		if ok != want {
			t.Errorf("Verify(%q) = %v, want %v", pw, ok, want)
		}
	}
}

func TestSaltIsRandom(t *testing.T) {
	a, _ := Hash("pw")
	b, _ := Hash("pw")
	if a == b {
		t.Error("two hashes of the same password are equal")
	}
}

func TestEmptyRejected(t *testing.T) {
	if _, err := Hash(""); !errors.Is(err, ErrEmpty) {
		t.Errorf("Hash(\"\") err = %v", err)
	}
	h, _ := Hash("x")
	if ok, err := Verify(h, ""); ok || !errors.Is(err, ErrEmpty) {
		t.Errorf("Verify(h, \"\") = %v, %v", ok, err)
	}
}

// The argon2id v1.3 vector from the reference implementation's test suite
// (m=64 MiB, t=2, p=1, "password", salt "somesalt"): a hash made elsewhere
// with other parameters verifies, because the parameters are read from
// the string.
func TestVerifyReferenceVector(t *testing.T) {
	const h = "$argon2id$v=19$m=65536,t=2,p=1$c29tZXNhbHQ$CTFhFdXPJO1aFaMaO6Mm5c8y7cJHAph8ArZWb2GRPPc"
	ok, err := Verify(h, "password")
	if err != nil {
		t.Fatal(err)
	}
	if !ok {
		t.Error("reference hash did not verify")
	}
}

func TestMalformed(t *testing.T) {
	good, _ := Hash("pw")
	f := strings.Split(good, "$")
	with := func(i int, v string) string {
		g := append([]string(nil), f...)
		g[i] = v
		return strings.Join(g, "$")
	}
	for name, h := range map[string]string{
		"empty":           "",
		"plain text":      "pw",
		"argon2i":         with(1, "argon2i"),
		"bcrypt":          "$2a$10$abcdefghijklmnopqrstuu5Wc2a7X7P2XNE4C2dS0Qy2w5w1a9ZUW",
		"version 16":      with(2, "v=16"),
		"trailing junk":   with(3, "m=19456,t=2,p=1x"),
		"signed":          with(3, "m=+19456,t=2,p=1"),
		"huge memory":     with(3, "m=4194304,t=2,p=1"),
		"zero time":       with(3, "m=19456,t=0,p=1"),
		"zero threads":    with(3, "m=19456,t=2,p=0"),
		"too many passes": with(3, "m=19456,t=1000,p=1"),
		"bad salt":        with(4, "!!"),
		"short salt":      with(4, "AAAA"),
		"short hash":      with(5, "AAAA"),
		"padded hash":     with(5, f[5]+"="),
		"extra field":     good + "$x",
	} {
		if _, err := Verify(h, "pw"); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: Verify err = %v, want ErrMalformed", name, err)
		}
	}
}

func BenchmarkVerify(b *testing.B) {
	h, _ := Hash("correct horse battery staple")
	for b.Loop() {
		if ok, _ := Verify(h, "correct horse battery staple"); !ok {
			b.Fatal("mismatch")
		}
	}
}
