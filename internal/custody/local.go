package custody

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"
)

// Local file names inside the key directory (.local/ca for `make run`).
const (
	localCAKey   = "ca.key"
	localCAChain = "ca.pem"
	localRAKey   = "ra.key"
	localRACert  = "ra.pem"
)

// LocalInitOptions shape a local CA.
type LocalInitOptions struct {
	Subject  pkix.Name
	Validity time.Duration
	KeyType  string // "RSA" (3072 bits) or "EC" (P-256)
	// NoRA selects CA-decrypt mode: no RA key is created.
	NoRA bool
}

// InitLocal creates a local CA in dir unless one exists: a key, a self-signed root and the RA. It is idempotent:
// an existing CA is kept and only a missing RA is created. It reports whether anything was created.
func InitLocal(dir string, opts LocalInitOptions, now time.Time) (bool, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return false, fmt.Errorf("custody: creating %s: %w", dir, err)
	}
	created := false
	if _, err := os.Stat(filepath.Join(dir, localCAChain)); errors.Is(err, fs.ErrNotExist) {
		key, err := generateKey(opts.KeyType)
		if err != nil {
			return false, err
		}
		if opts.Validity == 0 {
			opts.Validity = 10 * 365 * 24 * time.Hour
		}
		if opts.Subject.CommonName == "" {
			opts.Subject = pkix.Name{CommonName: "azscep local CA", Organization: []string{"azscep"}}
		}
		root, err := NewRoot(key, RootOptions{Subject: opts.Subject, Validity: opts.Validity}, now)
		if err != nil {
			return false, err
		}
		if err := writeKey(filepath.Join(dir, localCAKey), key); err != nil {
			return false, err
		}
		if err := writeCerts(filepath.Join(dir, localCAChain), root); err != nil {
			return false, err
		}
		created = true
	} else if err != nil {
		return false, fmt.Errorf("custody: %w", err)
	}
	if opts.NoRA {
		return created, nil
	}
	if _, err := os.Stat(filepath.Join(dir, localRACert)); errors.Is(err, fs.ErrNotExist) {
		if err := RotateLocalRA(dir, now); err != nil {
			return false, err
		}
		created = true
	}
	return created, nil
}

// RotateLocalRA replaces the local RA key and certificate with new ones issued by the local CA.
func RotateLocalRA(dir string, now time.Time) error {
	chain, caKey, err := loadLocalCA(dir)
	if err != nil {
		return err
	}
	raKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return fmt.Errorf("custody: generating RA key: %w", err)
	}
	raCert, err := NewRACertificate(chain[0], caKey, raKey.Public(), "azscep SCEP RA", now)
	if err != nil {
		return err
	}
	if err := writeKey(filepath.Join(dir, localRAKey), raKey); err != nil {
		return err
	}
	return writeCerts(filepath.Join(dir, localRACert), raCert)
}

// LoadLocal loads a local CA (and its RA, if present) and checks it.
func LoadLocal(dir string, now time.Time) (*Keys, error) {
	chain, caKey, err := loadLocalCA(dir)
	if err != nil {
		return nil, err
	}
	k := &Keys{Chain: chain, CASigner: caKey}
	if _, err := os.Stat(filepath.Join(dir, localRACert)); err == nil {
		certs, err := readCerts(filepath.Join(dir, localRACert))
		if err != nil {
			return nil, err
		}
		key, err := readKey(filepath.Join(dir, localRAKey))
		if err != nil {
			return nil, err
		}
		ra, ok := key.(RAKey)
		if !ok {
			return nil, errors.New("custody: local RA key cannot decrypt")
		}
		k.RACert, k.RAKey = certs[0], ra
	}
	if err := k.Check(now); err != nil {
		return nil, err
	}
	return k, nil
}

func loadLocalCA(dir string) ([]*x509.Certificate, crypto.Signer, error) {
	chain, err := readCerts(filepath.Join(dir, localCAChain))
	if err != nil {
		return nil, nil, err
	}
	key, err := readKey(filepath.Join(dir, localCAKey))
	if err != nil {
		return nil, nil, err
	}
	if err := matchCAKey(key, chain[0]); err != nil {
		return nil, nil, fmt.Errorf("%s: %w", dir, err)
	}
	return chain, key, nil
}

func generateKey(keyType string) (crypto.Signer, error) {
	switch keyType {
	case "", "RSA":
		return rsa.GenerateKey(rand.Reader, 3072)
	case "EC":
		return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	}
	return nil, fmt.Errorf("custody: local key type %q is not RSA or EC", keyType)
}

func writeKey(path string, key crypto.Signer) error {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return fmt.Errorf("custody: encoding key: %w", err)
	}
	return writeAtomic(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600)
}

func writeCerts(path string, certs ...*x509.Certificate) error {
	return writeAtomic(path, EncodePEM(certs...), 0o644)
}

// writeAtomic writes via a temporary file and rename so a crash never leaves half a key.
func writeAtomic(path string, data []byte, mode os.FileMode) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, mode); err != nil {
		return fmt.Errorf("custody: writing %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("custody: writing %s: %w", path, err)
	}
	return nil
}

func readKey(path string) (crypto.Signer, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("custody: reading key: %w", err)
	}
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "PRIVATE KEY" {
		return nil, fmt.Errorf("custody: %s is not a PKCS#8 PEM private key", path)
	}
	key, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("custody: parsing %s: %w", path, err)
	}
	s, ok := key.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("custody: %s holds a key that cannot sign", path)
	}
	return s, nil
}

// ParsePEMCertificates parses every CERTIFICATE block in data.
func ParsePEMCertificates(data []byte) ([]*x509.Certificate, error) {
	var certs []*x509.Certificate
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("custody: parsing certificate: %w", err)
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		return nil, errors.New("custody: no certificate found")
	}
	return certs, nil
}

func readCerts(path string) ([]*x509.Certificate, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("custody: reading certificates: %w", err)
	}
	certs, err := ParsePEMCertificates(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return certs, nil
}

// EncodePEM renders certificates as PEM.
func EncodePEM(certs ...*x509.Certificate) []byte {
	var out []byte
	for _, c := range certs {
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	return out
}
