package scep_test

import (
	"bytes"
	"crypto/x509/pkix"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/azscep/azscep/internal/testca"
)

// postFrom posts req to endpoint as the client at address xff (the platform's X-Forwarded-For entry).
func (e *env) postFrom(t *testing.T, endpoint, xff string, req *testca.Request) *testca.CertRep {
	t.Helper()
	r, err := http.NewRequest(http.MethodPost, e.url(endpoint)+"?operation=PKIOperation", bytes.NewReader(req.Raw))
	if err != nil {
		t.Fatal(err)
	}
	r.Header.Set("Content-Type", "application/x-pki-message")
	r.Header.Set("X-Forwarded-For", xff)
	resp, body := testca.Do(t, e.ts.Client(), r)
	return e.certRep(t, resp, body, req)
}

// challengeReq is a PKCSReq for fixture key n with challenge pw.
func challengeReq(t *testing.T, e *env, n int, pw string) *testca.Request {
	t.Helper()
	c := e.client(t, n, "guess")
	csr := testca.CSR(t, c.Key, testca.CSROptions{Subject: pkix.Name{CommonName: "guess"}, ChallengePassword: pw})
	return c.Message(t, testca.Message{Type: testca.MsgPKCSReq, Content: csr.Raw,
		TransactionID: fmt.Sprintf("guess-%d-%d", n, time.Now().UnixNano())})
}

// TestStaticChallengeGuessesThrottled: a client that sent ten wrong static challenges to an endpoint gets the same
// FAILURE badRequest for any challenge, the right one included, until its bucket refills (one every six minutes);
// right challenges never count, and other clients and other endpoints are not held back.
func TestStaticChallengeGuessesThrottled(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	const attacker, neighbour = "203.0.113.7", "198.51.100.9"

	// Right challenges in between cost nothing.
	for i := range 9 {
		wantFailure(t, e.postFrom(t, epStatic, attacker, challengeReq(t, e, 0, "wrong-guess-"+fmt.Sprint(i))), testca.FailBadRequest)
	}
	for n := 1; n <= 3; n++ {
		wantSuccess(t, e.postFrom(t, epStatic, attacker, challengeReq(t, e, n, staticSecret)))
	}
	wantFailure(t, e.postFrom(t, epStatic, attacker, challengeReq(t, e, 0, "wrong-guess-9")), testca.FailBadRequest)

	// Ten wrong: now the right challenge gets the wrong one's answer, so the answers tell nothing.
	wantFailure(t, e.postFrom(t, epStatic, attacker, challengeReq(t, e, 4, staticSecret)), testca.FailBadRequest)
	if n := len(e.records(t)); n != 3 {
		t.Fatalf("%d records, want the 3 right enrollments before the limit", n)
	}
	// Another client, and the same client at another endpoint, still enroll.
	wantSuccess(t, e.postFrom(t, epStatic, neighbour, challengeReq(t, e, 5, staticSecret)))
	wantSuccess(t, e.postFrom(t, epChain, attacker, challengeReq(t, e, 6, staticSecret)))

	// Six minutes on, one try is back.
	e.offset.Store(int64(6*time.Minute + time.Second))
	wantSuccess(t, e.postFrom(t, epStatic, attacker, challengeReq(t, e, 7, staticSecret)))
}

// TestStaticChallengeConcurrentGuesses: guesses sent at once are compared no more often than the limit allows.
func TestStaticChallengeConcurrentGuesses(t *testing.T) {
	t.Parallel()
	var logs testca.LogBuffer
	e := newEnv(t, envOptions{log: &logs})
	reqs := make([]*testca.Request, 25)
	for i := range reqs {
		reqs[i] = challengeReq(t, e, i%8, fmt.Sprint("concurrent-guess-", i))
	}
	bodies := make([][]byte, len(reqs))
	var wg sync.WaitGroup
	for i, req := range reqs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := http.Post(e.url(epStatic)+"?operation=PKIOperation", "application/x-pki-message",
				bytes.NewReader(req.Raw))
			if err != nil {
				t.Error(err)
				return
			}
			defer resp.Body.Close()
			if bodies[i], err = io.ReadAll(resp.Body); err != nil || resp.StatusCode != http.StatusOK {
				t.Errorf("HTTP %d %q %v", resp.StatusCode, bodies[i], err)
			}
		}()
	}
	wg.Wait()
	for i, req := range reqs {
		if bodies[i] != nil {
			wantFailure(t, req.ParseCertRep(t, bodies[i], e.ca.Recipient()), testca.FailBadRequest)
		}
	}
	compared := strings.Count(logs.String(), "challenge password is wrong")
	if compared != 10 {
		t.Fatalf("%d of 25 concurrent wrong challenges were compared, want 10", compared)
	}
}
