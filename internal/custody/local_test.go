package custody_test

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509/pkix"
	"os"
	"path/filepath"
	"testing"

	"github.com/azscep/azscep/internal/custody"
)

var localFiles = []string{"ca.key", "ca.pem", "ra.key", "ra.pem"}

func readFiles(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	for _, f := range localFiles {
		b, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		out[f] = b
	}
	return out
}

func initLocal(t *testing.T, dir string, opts custody.LocalInitOptions) {
	t.Helper()
	created, err := custody.InitLocal(dir, opts, now)
	if err != nil {
		t.Fatalf("InitLocal: %v", err)
	}
	if !created {
		t.Fatal("first InitLocal reports nothing created")
	}
}

// TestLocalRSALifecycle runs the local CA the way `make run` does: init, re-init, load, rotate the RA, and recover
// from a missing RA. It is the suite's only local RSA-3072 generation.
func TestLocalRSALifecycle(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), ".local", "ca")
	initLocal(t, dir, custody.LocalInitOptions{})
	first := readFiles(t, dir)

	// Idempotent: a second run creates nothing and leaves every file byte-identical.
	created, err := custody.InitLocal(dir, custody.LocalInitOptions{KeyType: "EC", Subject: pkix.Name{CommonName: "Ignored"}}, now)
	if err != nil || created {
		t.Fatalf("second InitLocal: created=%t err=%v", created, err)
	}
	if second := readFiles(t, dir); !equalFiles(first, second) {
		t.Fatal("second InitLocal changed the key files")
	}
	for _, f := range []string{"ca.key", "ra.key"} {
		if st, err := os.Stat(filepath.Join(dir, f)); err != nil || st.Mode().Perm() != 0o600 {
			t.Errorf("%s mode %v (%v), want 0600", f, st.Mode().Perm(), err)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "ca.key.tmp")); !os.IsNotExist(err) {
		t.Error("a temporary file was left behind")
	}

	k, err := custody.LoadLocal(dir, now)
	if err != nil {
		t.Fatalf("LoadLocal: %v", err)
	}
	ca := k.CA()
	if pub, ok := ca.PublicKey.(*rsa.PublicKey); !ok || pub.N.BitLen() != 3072 {
		t.Fatalf("local CA key is %T, want RSA 3072", ca.PublicKey)
	}
	if ca.Subject.CommonName != "azscep local CA" || !ca.NotAfter.Equal(now.Add(tenYears)) {
		t.Errorf("default CA subject %q NotAfter %s", ca.Subject, ca.NotAfter)
	}
	if k.RACert == nil || k.RAKey == nil {
		t.Fatal("no RA loaded")
	}
	checkEnvelopeOpens(t, k.RACert, k.RAKey)

	// Rotation replaces the RA, leaves the CA alone, and the result loads.
	if err := custody.RotateLocalRA(dir, now); err != nil {
		t.Fatalf("RotateLocalRA: %v", err)
	}
	rotated := readFiles(t, dir)
	if !bytes.Equal(rotated["ca.key"], first["ca.key"]) || !bytes.Equal(rotated["ca.pem"], first["ca.pem"]) {
		t.Error("RA rotation touched the CA files")
	}
	if bytes.Equal(rotated["ra.key"], first["ra.key"]) || bytes.Equal(rotated["ra.pem"], first["ra.pem"]) {
		t.Error("RA rotation did not replace the RA")
	}
	k2, err := custody.LoadLocal(dir, now)
	if err != nil {
		t.Fatalf("LoadLocal after rotation: %v", err)
	}
	if k2.RACert.SerialNumber.Cmp(k.RACert.SerialNumber) == 0 {
		t.Error("rotated RA has the old serial")
	}
	checkEnvelopeOpens(t, k2.RACert, k2.RAKey)

	// Without RA files the CA itself is the SCEP identity (CA-decrypt mode); init recreates only the RA.
	for _, f := range []string{"ra.key", "ra.pem"} {
		if err := os.Remove(filepath.Join(dir, f)); err != nil {
			t.Fatal(err)
		}
	}
	k3, err := custody.LoadLocal(dir, now)
	if err != nil {
		t.Fatalf("LoadLocal without RA: %v", err)
	}
	cert, key, err := k3.SCEPIdentity()
	if err != nil || !cert.Equal(ca) {
		t.Fatalf("SCEPIdentity without RA: %v", err)
	}
	checkEnvelopeOpens(t, cert, key)

	created, err = custody.InitLocal(dir, custody.LocalInitOptions{}, now)
	if err != nil || !created {
		t.Fatalf("InitLocal with a missing RA: created=%t err=%v", created, err)
	}
	again := readFiles(t, dir)
	if !bytes.Equal(again["ca.key"], first["ca.key"]) || !bytes.Equal(again["ca.pem"], first["ca.pem"]) {
		t.Error("recreating the RA touched the CA files")
	}
	if _, err := custody.LoadLocal(dir, now); err != nil {
		t.Fatalf("LoadLocal after RA recreation: %v", err)
	}
}

func equalFiles(a, b map[string][]byte) bool {
	for f := range a {
		if !bytes.Equal(a[f], b[f]) {
			return false
		}
	}
	return len(a) == len(b)
}

func TestLocalECCA(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	initLocal(t, dir, custody.LocalInitOptions{KeyType: "EC",
		Subject: pkix.Name{CommonName: "EC Local CA", Organization: []string{"Example Org"}}})
	k, err := custody.LoadLocal(dir, now)
	if err != nil {
		t.Fatalf("LoadLocal: %v", err)
	}
	pub, ok := k.CA().PublicKey.(*ecdsa.PublicKey)
	if !ok || pub.Curve != elliptic.P256() {
		t.Fatalf("CA key %T, want EC P-256", k.CA().PublicKey)
	}
	if k.CA().Subject.CommonName != "EC Local CA" {
		t.Errorf("CA subject %q", k.CA().Subject)
	}
	// The RA stays RSA (SCEP clients encrypt to it) and is signed with ECDSA by the CA.
	if _, ok := k.RACert.PublicKey.(*rsa.PublicKey); !ok {
		t.Fatalf("RA key %T, want RSA", k.RACert.PublicKey)
	}
	if err := k.RACert.CheckSignatureFrom(k.CA()); err != nil {
		t.Fatal(err)
	}
	if k.RACert.Subject.Organization[0] != "Example Org" {
		t.Errorf("RA subject %q does not carry the CA's organisation", k.RACert.Subject)
	}
	checkEnvelopeOpens(t, k.RACert, k.RAKey)

	// An EC CA cannot decrypt, so CA-decrypt mode (NoRA) does not load.
	noRA := t.TempDir()
	initLocal(t, noRA, custody.LocalInitOptions{KeyType: "EC", NoRA: true})
	if _, err := os.Stat(filepath.Join(noRA, "ra.pem")); !os.IsNotExist(err) {
		t.Fatal("NoRA created an RA")
	}
	_, err = custody.LoadLocal(noRA, now)
	wantErr(t, err, nil, "CA-decrypt mode needs an RSA CA key")
}

func TestLocalMismatchedFiles(t *testing.T) {
	t.Parallel()
	a, b := t.TempDir(), t.TempDir()
	initLocal(t, a, custody.LocalInitOptions{KeyType: "EC"})
	initLocal(t, b, custody.LocalInitOptions{KeyType: "EC"})
	copyFile := func(t *testing.T, name string) {
		t.Helper()
		data, err := os.ReadFile(filepath.Join(b, name))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(a, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}

	// Another CA's RA key next to our RA certificate.
	copyFile(t, "ra.key")
	_, err := custody.LoadLocal(a, now)
	wantErr(t, err, custody.ErrKeyMismatch, "the RA key does not match the RA certificate")

	// Another CA's key next to our CA certificate.
	copyFile(t, "ca.key")
	_, err = custody.LoadLocal(a, now)
	wantErr(t, err, custody.ErrKeyMismatch, "the CA key (EC P-256 key) does not match the CA certificate")

	// RotateLocalRA refuses to issue with the wrong key too, and leaves the RA files alone.
	before := readFiles(t, a)
	wantErr(t, custody.RotateLocalRA(a, now), custody.ErrKeyMismatch, "does not match the CA certificate")
	if !equalFiles(before, readFiles(t, a)) {
		t.Fatal("a refused RA rotation changed the key files")
	}
}

func TestLocalErrors(t *testing.T) {
	t.Parallel()
	_, err := custody.InitLocal(t.TempDir(), custody.LocalInitOptions{KeyType: "DSA"}, now)
	wantErr(t, err, custody.ErrInitOptions, `local key type "DSA" is not RSA or EC`)
	// Sizes and curves a Key Vault CA key could not have either are refused, not replaced by the defaults.
	_, err = custody.InitLocal(t.TempDir(), custody.LocalInitOptions{KeyType: "RSA", KeySize: 2048}, now)
	wantErr(t, err, custody.ErrInitOptions, "RSA key size 2048 is not 3072 or 4096")
	_, err = custody.InitLocal(t.TempDir(), custody.LocalInitOptions{KeyType: "EC", Curve: "P-521"}, now)
	wantErr(t, err, custody.ErrInitOptions, `curve "P-521" is not P-256 or P-384`)

	empty := t.TempDir()
	_, err = custody.LoadLocal(empty, now)
	wantErr(t, err, os.ErrNotExist, "reading certificates")
	wantErr(t, custody.RotateLocalRA(empty, now), os.ErrNotExist, "reading certificates")

	dir := t.TempDir()
	initLocal(t, dir, custody.LocalInitOptions{KeyType: "EC"})
	if err := os.WriteFile(filepath.Join(dir, "ra.key"), []byte("not a key"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = custody.LoadLocal(dir, now)
	wantErr(t, err, nil, "ra.key is not a PKCS#8 PEM private key")

	// An EC key file where the RA key belongs: it cannot decrypt SCEP envelopes.
	ca, err := os.ReadFile(filepath.Join(dir, "ca.key"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "ra.key"), ca, 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = custody.LoadLocal(dir, now)
	wantErr(t, err, nil, "local RA key cannot decrypt")

	if err := os.WriteFile(filepath.Join(dir, "ca.pem"), []byte("garbage"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = custody.LoadLocal(dir, now)
	wantErr(t, err, nil, "ca.pem: custody: no certificate found")
}
