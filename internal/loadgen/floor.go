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

// FloorMeter holds the keys of the floor's operations, generated once, so that a run can measure the floor
// many times (beside every server's turn) without paying key generation each time, and so that a stand-in
// server can run exactly the floor's operations per request (Enroll).
type FloorMeter struct {
	caBits, raBits int
	ca, ra         *rsa.PrivateKey
	wrapped        []byte // a CSR-sized envelope key (AES-256) wrapped to the RA, as a device sends it
	digest         [sha256.Size]byte
}

// NewFloorMeter generates an RSA CA key of caBits and an RA key of raBits.
func NewFloorMeter(caBits, raBits int) (*FloorMeter, error) {
	keys, err := GenerateRSAKeys(2, max(caBits, raBits))
	if err != nil {
		return nil, err
	}
	m := &FloorMeter{caBits: caBits, raBits: raBits, ca: keys[0], ra: keys[1],
		digest: sha256.Sum256([]byte("to-be-signed"))}
	if caBits != raBits {
		if m.ca, err = rsa.GenerateKey(rand.Reader, caBits); err != nil {
			return nil, err
		}
		if m.ra, err = rsa.GenerateKey(rand.Reader, raBits); err != nil {
			return nil, err
		}
	}
	cek := make([]byte, 32)
	if _, err := rand.Read(cek); err != nil {
		return nil, err
	}
	if m.wrapped, err = rsa.EncryptPKCS1v15(rand.Reader, &m.ra.PublicKey, cek); err != nil {
		return nil, err
	}
	return m, nil
}

func (m *FloorMeter) decrypt() error {
	_, err := m.ra.Decrypt(rand.Reader, m.wrapped, &rsa.PKCS1v15DecryptOptions{})
	return err
}

func (m *FloorMeter) signCA() error {
	_, err := m.ca.Sign(rand.Reader, m.digest[:], crypto.SHA256)
	return err
}

func (m *FloorMeter) signRA() error {
	_, err := m.ra.Sign(rand.Reader, m.digest[:], crypto.SHA256)
	return err
}

// Enroll runs one enrollment's private-key operations: decrypt the envelope key, sign with the CA key, sign with
// the RA key.
func (m *FloorMeter) Enroll() error {
	if err := m.decrypt(); err != nil {
		return err
	}
	if err := m.signCA(); err != nil {
		return err
	}
	return m.signRA()
}

// MeasureRSAFloor measures the floor for the given key sizes for about d (the keys are generated first, outside
// the measurement).
func MeasureRSAFloor(caBits, raBits int, d time.Duration) (Floor, error) {
	m, err := NewFloorMeter(caBits, raBits)
	if err != nil {
		return Floor{}, err
	}
	return m.Measure(d)
}

// Measure measures the floor for about d. The per-operation costs are measured on one goroutine; the rate with
// all CPUs busy, so that shared caches and turbo limits count as they do under load.
func (m *FloorMeter) Measure(d time.Duration) (Floor, error) {
	return m.measure(d, runtime.GOMAXPROCS(0))
}

// MeasureOn measures the floor of one CPU, cpu, for about d: the per-operation costs and the rate on one OS
// thread pinned to it. It is the floor of a server pinned to that CPU (AZSCEP_BENCH_PIN), whatever the rest of
// this process is pinned to meanwhile.
func (m *FloorMeter) MeasureOn(d time.Duration, cpu int) (Floor, error) {
	var f Floor
	err := onCPUs([]int{cpu}, func() error {
		var err error
		f, err = m.measure(d, 1)
		return err
	})
	return f, err
}

// measure runs the floor on cpus goroutines; with one, on the calling goroutine (so on its OS thread, which
// MeasureOn has pinned).
func (m *FloorMeter) measure(d time.Duration, cpus int) (Floor, error) {
	if d <= 0 {
		return Floor{}, errors.New("loadgen: floor duration must be positive")
	}
	f := Floor{CABits: m.caBits, RABits: m.raBits, CPUs: cpus}
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
	var err error
	if f.Decrypt, err = timeOp(m.decrypt); err != nil {
		return Floor{}, err
	}
	if f.SignCA, err = timeOp(m.signCA); err != nil {
		return Floor{}, err
	}
	if f.SignRA, err = timeOp(m.signRA); err != nil {
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
	run := func() {
		for time.Now().Before(deadline) {
			if err := m.Enroll(); err != nil {
				mu.Lock()
				firstErr = cmp.Or(firstErr, err)
				mu.Unlock()
				return
			}
			done.Add(1)
		}
	}
	if cpus == 1 {
		run()
	} else {
		for range cpus {
			wg.Go(run)
		}
		wg.Wait()
	}
	if firstErr != nil {
		return Floor{}, fmt.Errorf("loadgen: floor: %w", firstErr)
	}
	f.EnrollmentsPerSecond = float64(done.Load()) / time.Since(start).Seconds()
	return f, nil
}
