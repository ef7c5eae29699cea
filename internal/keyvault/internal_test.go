package keyvault

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"errors"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azkeys"
)

func TestCeilSeconds(t *testing.T) {
	for in, want := range map[time.Duration]time.Duration{
		0:                       time.Second,
		300 * time.Millisecond:  time.Second,
		time.Second:             time.Second,
		1400 * time.Millisecond: 2 * time.Second,
		30 * time.Second:        30 * time.Second,
	} {
		if got := ceilSeconds(in); got != want {
			t.Errorf("ceilSeconds(%v) = %v, want %v", in, got, want)
		}
	}
}

func TestBackoffCapped(t *testing.T) {
	k := &Key{opts: Options{BaseBackoff: 100 * time.Millisecond, MaxBackoff: 400 * time.Millisecond}.withDefaults()}
	for attempt := 1; attempt <= 10; attempt++ {
		full := min(100*time.Millisecond<<(attempt-1), 400*time.Millisecond)
		for range 20 {
			if d := k.backoff(attempt); d < full/2 || d > full {
				t.Fatalf("backoff(%d) = %v, want in [%v, %v]", attempt, d, full/2, full)
			}
		}
	}
}

func TestRawToDER(t *testing.T) {
	if _, err := rawToDER(make([]byte, 63), 32); !errors.Is(err, ErrInvalidResponse) {
		t.Fatalf("short signature: err = %v", err)
	}
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	d := sha256.Sum256([]byte("x"))
	r, s, err := ecdsa.Sign(rand.Reader, priv, d[:])
	if err != nil {
		t.Fatal(err)
	}
	raw := make([]byte, 64)
	r.FillBytes(raw[:32])
	s.FillBytes(raw[32:])
	der, err := rawToDER(raw, 32)
	if err != nil {
		t.Fatal(err)
	}
	if !ecdsa.VerifyASN1(&priv.PublicKey, d[:], der) {
		t.Fatal("converted signature does not verify")
	}
}

// TestCheckSignature: a signature that does not verify under the pinned key
// is an error, never returned to the caller; a stripped leading zero is
// repaired.
func TestCheckSignature(t *testing.T) {
	a, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	b, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	k := &Key{pub: &a.PublicKey}
	d := sha256.Sum256([]byte("x"))
	sigB, err := rsa.SignPKCS1v15(nil, b, crypto.SHA256, d[:])
	if err != nil {
		t.Fatal(err)
	}
	if _, err := k.checkSignature(d[:], sigB, crypto.SHA256, false); !errors.Is(err, ErrInvalidResponse) {
		t.Fatalf("foreign signature: err = %v, want ErrInvalidResponse", err)
	}
	if _, err := k.checkSignature(d[:], make([]byte, 257), crypto.SHA256, false); !errors.Is(err, ErrInvalidResponse) {
		t.Fatalf("oversized signature: err = %v", err)
	}
	// Find a message whose signature starts with a zero byte, strip it.
	for i := 0; ; i++ {
		d := sha256.Sum256([]byte{byte(i), byte(i >> 8)})
		sig, err := rsa.SignPKCS1v15(nil, a, crypto.SHA256, d[:])
		if err != nil {
			t.Fatal(err)
		}
		if sig[0] != 0 {
			continue
		}
		got, err := k.checkSignature(d[:], sig[1:], crypto.SHA256, false)
		if err != nil || len(got) != 256 {
			t.Fatalf("stripped signature: %d bytes, %v", len(got), err)
		}
		break
	}
}

func TestPublicKeyConversion(t *testing.T) {
	kty := func(k azkeys.KeyType) *azkeys.KeyType { return &k }
	crv := func(c azkeys.CurveName) *azkeys.CurveName { return &c }

	// An EC key whose X coordinate has a leading zero, sent stripped.
	var priv *ecdsa.PrivateKey
	for {
		p, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		if raw, _ := p.PublicKey.Bytes(); raw[1] == 0 {
			priv = p
			break
		}
	}
	raw, err := priv.PublicKey.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	pub, err := publicKey(&azkeys.JSONWebKey{Kty: kty(azkeys.KeyTypeEC), Crv: crv(azkeys.CurveNameP256), X: raw[2:33], Y: raw[33:]})
	if err != nil {
		t.Fatal(err)
	}
	if !priv.PublicKey.Equal(pub) {
		t.Fatal("stripped X coordinate converted to a different key")
	}

	bad := bytes.Clone(raw[1:33])
	bad[31] ^= 1 // moves the point off the curve
	for _, tc := range []struct {
		name string
		jwk  azkeys.JSONWebKey
		want error
	}{
		{"not-on-curve", azkeys.JSONWebKey{Kty: kty(azkeys.KeyTypeEC), Crv: crv(azkeys.CurveNameP256), X: bad, Y: raw[33:]}, ErrInvalidResponse},
		{"coordinate-too-long", azkeys.JSONWebKey{Kty: kty(azkeys.KeyTypeEC), Crv: crv(azkeys.CurveNameP256), X: make([]byte, 33), Y: raw[33:]}, ErrInvalidResponse},
		{"secp256k1", azkeys.JSONWebKey{Kty: kty(azkeys.KeyTypeEC), Crv: crv(azkeys.CurveNameP256K), X: raw[1:33], Y: raw[33:]}, ErrUnsupported},
		{"no-crv", azkeys.JSONWebKey{Kty: kty(azkeys.KeyTypeEC)}, ErrInvalidResponse},
		{"oct", azkeys.JSONWebKey{Kty: kty(azkeys.KeyTypeOct)}, ErrUnsupported},
		{"no-kty", azkeys.JSONWebKey{}, ErrInvalidResponse},
		{"rsa-no-n", azkeys.JSONWebKey{Kty: kty(azkeys.KeyTypeRSA), E: []byte{1, 0, 1}}, ErrInvalidResponse},
		{"rsa-huge-e", azkeys.JSONWebKey{Kty: kty(azkeys.KeyTypeRSA), N: make([]byte, 256), E: make([]byte, 5)}, ErrInvalidResponse},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := publicKey(&tc.jwk); !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
		})
	}
}
