package loadgen

import (
	"cmp"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// Floor is the CPU floor of a SCEP enrollment with local keys (go-libraries.md §8): the three private-key
// operations no implementation can avoid — decrypt the envelope with the RA key, sign the certificate with the CA
// key, sign the CertRep with the RA key — run back to back on every CPU.
type Floor struct {
	CABits, RABits int
	CPUs           int
	// Per-operation cost on one CPU.
	Decrypt, SignCA, SignRA time.Duration
	// EnrollmentsPerSecond is how many enrollments the machine could do if it did nothing else.
	EnrollmentsPerSecond float64
}

// String describes the floor on one line.
func (f Floor) String() string {
	return fmt.Sprintf("RSA floor (CA %d, RA %d bits, %d CPUs): decrypt %s + sign CA %s + sign RA %s = %.0f enrollments/s",
		f.CABits, f.RABits, f.CPUs, f.Decrypt.Round(time.Microsecond), f.SignCA.Round(time.Microsecond),
		f.SignRA.Round(time.Microsecond), f.EnrollmentsPerSecond)
}

// MeasureRSAFloor measures the floor for the given key sizes for about d (the keys are generated first, outside
// the measurement). The per-operation costs are measured on one goroutine; the rate with all CPUs busy, so that
// shared caches and turbo limits count as they do under load.
func MeasureRSAFloor(caBits, raBits int, d time.Duration) (Floor, error) {
	if d <= 0 {
		return Floor{}, errors.New("loadgen: floor duration must be positive")
	}
	keys, err := GenerateRSAKeys(2, max(caBits, raBits))
	if err != nil {
		return Floor{}, err
	}
	ca, ra := keys[0], keys[1]
	if caBits != raBits {
		if ca, err = rsa.GenerateKey(rand.Reader, caBits); err != nil {
			return Floor{}, err
		}
		if ra, err = rsa.GenerateKey(rand.Reader, raBits); err != nil {
			return Floor{}, err
		}
	}
	// A CSR-sized envelope key (AES-256) wrapped to the RA, as a device sends it.
	cek := make([]byte, 32)
	if _, err := rand.Read(cek); err != nil {
		return Floor{}, err
	}
	wrapped, err := rsa.EncryptPKCS1v15(rand.Reader, &ra.PublicKey, cek)
	if err != nil {
		return Floor{}, err
	}
	digest := sha256.Sum256([]byte("to-be-signed"))
	one := func() error {
		if _, err := ra.Decrypt(rand.Reader, wrapped, &rsa.PKCS1v15DecryptOptions{}); err != nil {
			return err
		}
		if _, err := ca.Sign(rand.Reader, digest[:], crypto.SHA256); err != nil {
			return err
		}
		_, err := ra.Sign(rand.Reader, digest[:], crypto.SHA256)
		return err
	}
	f := Floor{CABits: caBits, RABits: raBits, CPUs: runtime.GOMAXPROCS(0)}
	timeOp := func(op func() error) (time.Duration, error) {
		const n = 20
		start := time.Now()
		for range n {
			if err := op(); err != nil {
				return 0, err
			}
		}
		return time.Since(start) / n, nil
	}
	if f.Decrypt, err = timeOp(func() error {
		_, err := ra.Decrypt(rand.Reader, wrapped, &rsa.PKCS1v15DecryptOptions{})
		return err
	}); err != nil {
		return Floor{}, err
	}
	if f.SignCA, err = timeOp(func() error { _, err := ca.Sign(rand.Reader, digest[:], crypto.SHA256); return err }); err != nil {
		return Floor{}, err
	}
	if f.SignRA, err = timeOp(func() error { _, err := ra.Sign(rand.Reader, digest[:], crypto.SHA256); return err }); err != nil {
		return Floor{}, err
	}

	var (
		done     atomic.Int64
		wg       sync.WaitGroup
		mu       sync.Mutex
		firstErr error
	)
	deadline := time.Now().Add(d)
	start := time.Now()
	for range f.CPUs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(deadline) {
				if err := one(); err != nil {
					mu.Lock()
					firstErr = cmp.Or(firstErr, err)
					mu.Unlock()
					return
				}
				done.Add(1)
			}
		}()
	}
	wg.Wait()
	if firstErr != nil {
		return Floor{}, fmt.Errorf("loadgen: floor: %w", firstErr)
	}
	f.EnrollmentsPerSecond = float64(done.Load()) / time.Since(start).Seconds()
	return f, nil
}
