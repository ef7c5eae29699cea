// Package store owns the CA's durable records: one record per certificate the CA ever planned to sign, the
// idempotency index that makes SCEP transaction IDs and REST retries replayable, the revocation index the CRL is
// built from, the Intune revocation work items, and small pieces of CA state (public chain, wrapped RA key,
// CRL number).
//
// Records are never deleted or overwritten (the summaries of sync runs, which are no records, are pruned). A record
// is created with an insert (a serial collision fails) and then only moves through the state machine pending →
// issued | abandoned, issued → revoked, each move an update conditioned on the ETag the caller read (reliability.md
// §5.1).
package store

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"slices"
	"strings"
	"time"
)

// Status is the lifecycle state of a certificate record.
type Status string

// The record states. A pending record exists before every signature; it becomes issued once the signed
// certificate is stored, or abandoned when the signature was never made (or its outcome is unknown and the
// caller gave up — an abandoned record with a planned certificate may still be revoked by serial).
const (
	StatusPending   Status = "pending"
	StatusIssued    Status = "issued"
	StatusAbandoned Status = "abandoned"
	StatusRevoked   Status = "revoked"
)

// CanMove reports whether the state machine allows the transition from s to next.
func (s Status) CanMove(next Status) bool {
	switch s {
	case StatusPending:
		return next == StatusIssued || next == StatusAbandoned || next == StatusRevoked
	case StatusIssued:
		return next == StatusRevoked
	case StatusAbandoned:
		// A pending record whose signature outcome was unknown can still be revoked by an admin.
		return next == StatusRevoked
	}
	return false
}

// Sources recorded on every certificate.
const (
	SourceSCEP = "scep"
	SourceAPI  = "api"
)

// Record is one certificate the CA planned to sign. Field names follow the table schema in README.md.
type Record struct {
	// Serial is the certificate serial as upper-case hexadecimal without leading zeros: the exact string the
	// CA reports to Intune and the row's key.
	Serial string
	Status Status

	Issuer     string // issuer DN, RFC 2253
	Subject    string // subject DN, RFC 2253
	SANs       []string
	NotBefore  time.Time
	NotAfter   time.Time
	SHA1       string // upper-case hex SHA-1 of the certificate DER (set when issued)
	SHA256     string // upper-case hex SHA-256 of the certificate DER (set when issued)
	PublicKey  string // hex SHA-256 of the subject public key info: binds replays to a key
	CSRHash    string // hex SHA-256 of the PKCS#10 DER
	Source     string // SourceSCEP or SourceAPI
	Endpoint   string // SCEP endpoint name, or the REST profile name
	Requester  string // Entra object ID, UPN or app ID for REST; challenge type for SCEP
	Profile    string // profile name the certificate was built from
	TxID       string // SCEP transaction ID or REST idempotency key
	DeviceID   string // Intune or Entra device ID when known
	PlannedDER []byte // the linted to-be-signed certificate (with an empty signature): what we planned to sign
	CertDER    []byte // the issued certificate
	// DeviceObjectID is the directory object ID (lower case) of the Entra device a self-service certificate was
	// issued for, as Graph named it when ownership was checked: a deleted device's entry in Graph's devices delta
	// carries only that ID, not the deviceId. "" for other certificates, an Intune managed device with no Entra
	// device, and records written before it was kept.
	DeviceObjectID string

	// RenewedFrom is the serial of the certificate a SCEP RenewalReq was signed with; "" for first issuances.
	RenewedFrom string
	// RenewedTo is the forward link: the serial of the latest certificate a RenewalReq signed by this one
	// produced; "" while it has renewed nothing. A superseded certificate still signs renewals while it is valid,
	// so the renewal check follows these links and refuses a certificate whose successors include a revoked one:
	// revoking a device's current certificate then also ends its predecessors' renewals. Written after the
	// successor is issued (bookkeeping, like IntuneNotified), and repointed by a revocation at the branch that
	// leads to the revoked certificate, so a lost link write is repaired when it matters.
	RenewedTo string
	// ChainStarted is when the first certificate of a renewal chain was issued (that record's Created); zero for
	// first issuances. A renewal chain may not outlive the renewing endpoint's maximum counted from here.
	ChainStarted time.Time
	// ChainEnds is the earliest end of the renewal chain set by the endpoints it passed through before this
	// record's endpoint (ChainStarted plus each one's renewal maximum when the chain left it); zero while the chain
	// stayed on one endpoint, and on records written before it was kept. A renewal at another endpoint (renew_from)
	// never carries the chain past it: the endpoint that authorized the names bounded how long they renew.
	ChainEnds time.Time

	// Intune bookkeeping (SCEP endpoints of type intune).
	IntuneSerial    string // exact serial string sent in successNotification
	CAConfiguration string // caConfiguration sent in successNotification
	IntuneNotified  bool   // successNotification accepted
	Withheld        bool   // signed but never delivered (Intune refused the success notification, or gave no verdict)
	// GateUndecided marks a withheld certificate whose success notification got no verdict from Intune (down,
	// throttling, refusing this CA's identity): nobody refused the request, so a retry with the same idempotency key
	// is authorized again and, for the same CSR, delivers this certificate through the gate (clearing the mark), or
	// for another CSR is signed afresh (taking the key over) while this certificate stays withheld and never leaves.
	GateUndecided bool
	// Gated marks a certificate issued behind a delivery gate (an Intune endpoint): it may leave, then or later,
	// only once IntuneNotified. Written with the pending record, so the rule does not follow later settings.
	Gated bool

	RevokedAt        time.Time
	RevocationReason int    // RFC 5280 CRLReason
	RevokedBy        string // "intune", or the admin's identity
	RevocationRef    string // Intune requestContext or audit reference

	Note    string // why a record was abandoned or withheld
	Created time.Time
	Updated time.Time

	// ETag is the version the record was read or written at; updates are conditioned on it.
	ETag string
}

// MaxRenewalWalk bounds how many records a walk along renewal links reads: the renewal check following RenewedTo
// forward from a renewal's signer, and a revocation following RenewedFrom back to the revoked certificate's
// ancestors. A chain longer than that, from a certificate still valid, is refused renewal rather than read on:
// renewals come in the last part of a certificate's validity, so a real one is a few links long.
const MaxRenewalWalk = 10

// Errors every Store implementation returns (wrapped) so callers can use errors.Is.
var (
	ErrNotFound    = errors.New("store: not found")
	ErrExists      = errors.New("store: already exists")
	ErrConflict    = errors.New("store: record changed since it was read")
	ErrTransition  = errors.New("store: transition not allowed")
	ErrUnavailable = errors.New("store: unavailable")
)

// Certificates is the certificate-record part of the store.
type Certificates interface {
	// Insert creates a new record; a record with the same serial makes it fail with ErrExists.
	Insert(ctx context.Context, r *Record) error
	// Update writes r if the stored record still has r.ETag, after checking that the stored status may move to
	// r.Status. On success r.ETag is the new version. A stale ETag gives ErrConflict. A time or a certificate
	// (PlannedDER, CertDER), once set, is never cleared: Table Storage merges the update into the stored entity,
	// keeping the properties a newer version added, and a zero time or an empty certificate leaves the stored one.
	Update(ctx context.Context, r *Record, from Status) error
	// Get reads one record by serial (any accepted spelling, see NormalizeSerial).
	Get(ctx context.Context, serial string) (*Record, error)
	// Search lists records matching q, newest first within a page, with an opaque continuation token.
	Search(ctx context.Context, q Query) (page []*Record, next string, err error)
	// Pending lists records still pending that were created before the cutoff (the sweeper's view).
	Pending(ctx context.Context, before time.Time) ([]*Record, error)
}

// DeviceIDForms are the device IDs a Query.DeviceID of id matches: id itself, in lower case and in upper case,
// each once.
func DeviceIDForms(id string) []string {
	forms := []string{id}
	for _, f := range []string{strings.ToLower(id), strings.ToUpper(id)} {
		if !slices.Contains(forms, f) {
			forms = append(forms, f)
		}
	}
	return forms
}

// Query selects records for the admin API. Empty fields do not filter.
type Query struct {
	Subject string // substring of the subject DN (case-insensitive)
	Name    string // substring of the subject DN or of any SAN, e.g. a UPN (case-insensitive)
	// DeviceID matches a record's device ID as given, in lower case or in upper case (DeviceIDForms): GUIDs are
	// written either way (the Intune portal shows them in lower case, Windows in upper case), and records kept the
	// case their CSR had before device IDs were recorded in lower case.
	DeviceID  string
	Requester string
	// PublicKey is the record's public-key hash (KeyHash), matched exactly: the certificates a compromised key
	// reaches.
	PublicKey    string
	Endpoint     string // SCEP endpoint name or REST profile name
	Source       string // SourceSCEP or SourceAPI
	Status       Status
	Since, Until time.Time // on Created
	Limit        int
	Continuation string
	// ScanPages, when above 0, bounds the pages of its own listing the backend reads for one call (Table Storage:
	// query pages of up to 1,000 entities or five seconds of scanning). A filter Table Storage cannot answer from
	// the keys (status, source, requester...) makes it scan the partition, and on a large table whose records
	// rarely match one call could scan for minutes before it found a page: a caller bounded in time (the hourly
	// sweeps) would end inside that call every run, with no progress to go on from. Past the bound the call
	// returns what it found, possibly nothing, with a continuation from where the listing stopped.
	ScanPages int
}

// NameMatches reports whether name is a case-insensitive substring of r's subject DN or of one of its SANs: the
// Query.Name filter, shared by the implementations.
func NameMatches(r *Record, name string) bool {
	name = strings.ToLower(name)
	if strings.Contains(strings.ToLower(r.Subject), name) {
		return true
	}
	for _, san := range r.SANs {
		if strings.Contains(strings.ToLower(san), name) {
			return true
		}
	}
	return false
}

// Index maps idempotency keys (SCEP transaction IDs per endpoint, REST retry keys) to serials. A key is only ever
// bound together with the pending record it points to, in one atomic write, so a binding always has its record.
type Index interface {
	// InsertBound inserts the pending record r and binds key to r.Serial in one atomic write: both commit or
	// neither does (in Table Storage one entity-group transaction: records and bindings share a partition).
	// With prev nil the key must be unbound; a bound key gives
	// ErrExists and the current binding, and nothing is written. With prev set the binding moves from prev.Serial
	// to r.Serial if it is still at prev.ETag (ErrConflict otherwise; ErrNotFound if the key was never bound). A
	// record that exists already with r.Serial gives ErrExists and a zero Binding. On success r.Created (when
	// zero), r.Updated and r.ETag are set as by Insert.
	InsertBound(ctx context.Context, key string, prev *Binding, r *Record) (Binding, error)
	// Lookup returns the current binding of key, or ErrNotFound.
	Lookup(ctx context.Context, key string) (Binding, error)
}

// Binding is the state of one idempotency key.
type Binding struct {
	Key     string
	Serial  string
	Created time.Time
	ETag    string
}

// Revoked is one entry of the revocation index the CRL is built from.
type Revoked struct {
	Serial    string
	RevokedAt time.Time
	Reason    int
	// NotAfter is the certificate's notAfter, so that the CRL can drop it once it has expired (RFC 5280 §3.3).
	// Zero for entries written before the index kept it: they stay on the CRL.
	NotAfter time.Time
}

// CompromisedKey marks a key whose compromise was reported: a certificate for it was revoked with reason
// keyCompromise. Other certificates may carry the same key (a re-enrollment with the key, a renewal that kept it),
// and none of them may sign a renewal, nor may a renewal ask for the key, once it is marked. Marks are kept
// forever: a key does not stop being compromised when the certificate expires.
type CompromisedKey struct {
	// PublicKey is the key's Record.PublicKey: lower-case hex SHA-256 of the SubjectPublicKeyInfo.
	PublicKey string
	// Serial is the certificate whose revocation marked the key (the first one, when several did).
	Serial string
	// By is who asked for that revocation (Record.RevokedBy's form: "admin:…", "cli:…", "sweep"); empty in marks
	// written before it was recorded.
	By       string
	MarkedAt time.Time
}

// KeyCompromise is the RFC 5280 CRLReason that marks a key compromised.
const KeyCompromise = 1

// ValidKeyHash reports whether h can name a key in MarkCompromised and Compromised: 1 to 128 lower-case
// hexadecimal digits, as Record.PublicKey holds them (and as a Table Storage row key may hold them).
func ValidKeyHash(h string) bool {
	if h == "" || len(h) > 128 {
		return false
	}
	for _, c := range h {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// Revocations is the revocation index: written before the record moves to revoked so that a crash between the
// two writes errs on the side of publishing the revocation.
type Revocations interface {
	// AddRevoked records a revocation in the index and returns the entry the index holds: e, or the first entry
	// for that serial when there is one already (adding again keeps it), so that the record can be written with
	// the time and reason the CRL already publishes.
	AddRevoked(ctx context.Context, e Revoked) (Revoked, error)
	// ListRevoked returns every revoked serial.
	ListRevoked(ctx context.Context) ([]Revoked, error)
	// GetRevoked returns the index entry of serial (any spelling NormalizeSerial accepts), or ErrNotFound: one
	// point read, for checks that must see a revocation once it is published, before its record says so (a
	// revocation interrupted between its two writes stays that way until a retry or the sweep completes it).
	GetRevoked(ctx context.Context, serial string) (Revoked, error)
	// MarkCompromised records that k.PublicKey is compromised and returns the mark the store holds: k, or the
	// first mark of that key when there is one already (marking again keeps it); created says it is k, written by
	// this call. A key that is not ValidKeyHash is an error.
	MarkCompromised(ctx context.Context, k CompromisedKey) (kept CompromisedKey, created bool, err error)
	// Compromised returns the mark of publicKey (a Record.PublicKey), or ErrNotFound: one point read, so that
	// renewals can ask about the signer's and the requested key.
	Compromised(ctx context.Context, publicKey string) (CompromisedKey, error)
	// ListCompromised returns every compromised-key mark, in no particular order: few keys are ever reported
	// compromised, so that every door can check a new certificate's key against a copy in memory.
	ListCompromised(ctx context.Context) ([]CompromisedKey, error)
}

// Meta holds small named documents of CA state with optimistic concurrency.
type Meta interface {
	// GetMeta returns the value and ETag stored under name, or ErrNotFound.
	GetMeta(ctx context.Context, name string) (value []byte, etag string, err error)
	// PutMeta creates name when etag is "" (ErrExists if it exists) or replaces it if it is still at etag
	// (ErrConflict otherwise). It returns the new ETag.
	PutMeta(ctx context.Context, name string, value []byte, etag string) (string, error)
}

// Backlog is one public key's reservations for gated signatures (issuance's per-key bound on certificates awaiting
// Intune's verdict): each gated request writes its serial here, ETag-conditioned, before its pending record and its
// signature, so that every instance sees every other's. It is no record: reservations expire (the caller drops the
// ones older than its window on every write), a settled one stops counting (the caller reads the record it names),
// and an entity whose reservations all expired is deleted (PruneBacklogs).
type Backlog struct {
	// PublicKey is the key's Record.PublicKey: lower-case hex SHA-256 of the SubjectPublicKeyInfo (ValidKeyHash).
	PublicKey    string
	Reservations []Reservation
	// ETag is the version the backlog was read or written at; PutBacklog and DeleteBacklog are conditioned on it.
	ETag string
}

// Reservation is one gated signature counted against its key's bound: the serial its pending record is (or is about
// to be) inserted under, and when it was reserved.
type Reservation struct {
	Serial string
	At     time.Time
}

// Latest is the newest reservation's time, zero for none: a backlog whose Latest is older than the window holds
// nothing that counts.
func (b *Backlog) Latest() time.Time {
	var t time.Time
	for _, r := range b.Reservations {
		if r.At.After(t) {
			t = r.At
		}
	}
	return t
}

// MaxReservations bounds the reservations one Backlog holds, which the callers keep to a few (issuance's bound).
const MaxReservations = 16

// Backlogs persists the per-key Backlog, with optimistic concurrency.
type Backlogs interface {
	// GetBacklog reads publicKey's backlog, or ErrNotFound.
	GetBacklog(ctx context.Context, publicKey string) (*Backlog, error)
	// PutBacklog creates b when b.ETag is "" (ErrExists if it exists) or replaces it if it is still at b.ETag
	// (ErrConflict otherwise; ErrNotFound if it is gone). On success b.ETag is the new version. A key that is not
	// ValidKeyHash, or more than MaxReservations reservations, is an error.
	PutBacklog(ctx context.Context, b *Backlog) error
	// DeleteBacklog deletes publicKey's backlog if it is still at etag (ErrConflict otherwise; ErrNotFound if it is
	// gone).
	DeleteBacklog(ctx context.Context, publicKey, etag string) error
	// PruneBacklogs deletes at most limit (> 0) backlogs whose every reservation was made before before, each
	// conditioned on the version it was listed at (one written since stays), and returns how many it deleted.
	PruneBacklogs(ctx context.Context, before time.Time, limit int) (int, error)
}

// Store is everything the CA persists.
type Store interface {
	Certificates
	Index
	Revocations
	Meta
	RevocationQueue
	Backlogs
	// Ping checks that the backend answers (health endpoint).
	Ping(ctx context.Context) error
}

var serialSeparators = strings.NewReplacer(":", "", " ", "", "-", "")

// NormalizeSerial turns any common spelling of a serial (upper or lower case, leading zeros, colon or space
// separators, optional 0x) into the canonical form used as the record key. It returns "" for anything that is
// not a positive hexadecimal integer of at most 20 octets.
func NormalizeSerial(s string) string {
	s = strings.TrimSpace(s)
	s = strings.TrimPrefix(strings.TrimPrefix(s, "0x"), "0X")
	s = serialSeparators.Replace(s)
	s = strings.TrimLeft(s, "0")
	if s == "" || len(s) > 40 {
		return ""
	}
	for _, c := range s {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F') {
			return ""
		}
	}
	return strings.ToUpper(s)
}

// SerialString renders a certificate serial in the canonical form.
func SerialString(n *big.Int) string {
	return strings.ToUpper(n.Text(16))
}

// ParseSerial is the inverse of SerialString for canonical or loosely spelled serials.
func ParseSerial(s string) (*big.Int, error) {
	c := NormalizeSerial(s)
	if c == "" {
		return nil, fmt.Errorf("serial %q: %w", s, ErrNotFound)
	}
	n, _ := new(big.Int).SetString(c, 16)
	return n, nil
}

// WorkState is where an Intune revocation request stands in our hands (reliability.md §5.2).
type WorkState string

// Work item states. A request is persisted as downloaded before anything acts on it; applied once our records
// reflect it and the result to report is stored on the item; uploaded once Intune accepted the result. Foreign
// items (another CA's) are kept for audit and never acknowledged.
const (
	WorkDownloaded WorkState = "downloaded"
	WorkApplied    WorkState = "applied"
	WorkUploaded   WorkState = "uploaded"
	WorkForeign    WorkState = "foreign"
)

// RevocationRequest is one Intune revocation request and our progress on it.
type RevocationRequest struct {
	RequestContext  string // opaque, echoed to Intune; the item's identity
	SerialNumber    string // as Intune sent it
	IssuerName      string
	CAConfiguration string
	State           WorkState

	// The result to upload, set when State reaches WorkApplied.
	Succeeded    bool
	ErrorCode    string
	ErrorMessage string

	Downloaded time.Time
	Applied    time.Time
	Uploaded   time.Time
	Attempts   int // upload attempts
	ETag       string
}

// RevocationQueue persists Intune revocation work items and the record of each sync run.
type RevocationQueue interface {
	// EnqueueRevocation inserts a downloaded request; ErrExists if its RequestContext is already known.
	EnqueueRevocation(ctx context.Context, r *RevocationRequest) error
	// EnqueueRevocations inserts each of rs (at most MaxRevocationBatch, each RequestContext once) as
	// EnqueueRevocation does, in as few calls as the store allows: Table Storage inserts them in one transaction,
	// all or none, so ErrExists (one of them is already known) means none of them was written. An answer lost after
	// the store committed is success once the store's own retry finds the items it wrote, as for EnqueueRevocation.
	// Any other error leaves the caller unsure which were written, and inserting them again one by one is safe:
	// EnqueueRevocation answers ErrExists for one already stored, and no request is ever held twice.
	EnqueueRevocations(ctx context.Context, rs []*RevocationRequest) error
	// UpdateRevocation writes r if it is still at r.ETag (ErrConflict otherwise) and refreshes r.ETag.
	UpdateRevocation(ctx context.Context, r *RevocationRequest) error
	// UpdateRevocations writes each of rs (at most MaxRevocationBatch) as UpdateRevocation does, in as few calls
	// as the store allows: Table Storage writes them in one transaction, all or none. On an error the caller
	// cannot tell which were written, except that each written one has its ETag refreshed, so writing them again
	// one by one is safe.
	UpdateRevocations(ctx context.Context, rs []*RevocationRequest) error
	// Revocation reads the item persisted for requestContext; ErrNotFound if there is none.
	Revocation(ctx context.Context, requestContext string) (*RevocationRequest, error)
	// OpenRevocations lists items in state downloaded or applied, oldest first, at most limit.
	OpenRevocations(ctx context.Context, limit int) ([]*RevocationRequest, error)
	// RecordRun appends the summary of one sync run: a run records itself when it starts (Finished zero) and
	// FinishRun writes its outcome over that record, so that any instance can tell a run in progress.
	RecordRun(ctx context.Context, run SyncRun) error
	// FinishRun writes run over the record RecordRun made of it (the same ID and Started); ErrNotFound if there
	// is none.
	FinishRun(ctx context.Context, run SyncRun) error
	// Runs lists the most recent sync runs, newest first.
	Runs(ctx context.Context, limit int) ([]SyncRun, error)
	// RunByID reads the record of the run with that ID; ErrNotFound if there is none. An ID made by NewRunID is
	// one point read, found or not; any other ID (runs recorded before IDs carried their start) is looked for
	// among the runs kept.
	RunByID(ctx context.Context, id string) (SyncRun, error)
	// PruneRuns deletes the records of runs started before before, at most limit of them (limit > 0), and returns
	// how many it deleted; later calls delete the rest. The caller picks before so that no run started then can
	// still be going: a record is deleted whether or not its run recorded an end.
	PruneRuns(ctx context.Context, before time.Time, limit int) (int, error)
}

// MaxRevocationBatch is how many revocation requests one EnqueueRevocations or UpdateRevocations call takes: Table
// Storage's limit of operations in one entity-group transaction.
const MaxRevocationBatch = 100

// runIDTime is how a run ID made by NewRunID begins: the run's start in UTC, to the 100 ns Table Storage keeps.
const runIDTime = "20060102T150405.0000000Z"

// runIDRandom is how many hexadecimal digits of randomness follow the start in a NewRunID ID: two runs started in
// the same 100 ns stay apart.
const runIDRandom = 16

// NewRunID returns a new ID for a sync run started at started: the start (UTC, to 100 ns) and random digits, as
// in 20261207T140404.1234567Z-0123456789abcdef. The store derives the run's key from its ID, so that RunByID is one
// point read, and an operator reads from the ID when the run started. The run is recorded with that Started (at
// 100 ns; RecordRun refuses another, and takes it when Started is zero).
func NewRunID(started time.Time) string {
	b := make([]byte, runIDRandom/2)
	_, _ = rand.Read(b)
	return started.UTC().Format(runIDTime) + "-" + hex.EncodeToString(b)
}

// StartFromRunID gives a run with a zero Started the start its NewRunID ID holds (RecordRun).
func StartFromRunID(run *SyncRun) {
	if t, ok := RunIDStart(run.ID); ok && run.Started.IsZero() {
		run.Started = t
	}
}

// CheckRunStart refuses a run whose Started (at the 100 ns the stores keep) is not the start its NewRunID ID holds:
// the stores find such a run by the key its ID gives (RunByID), so it must be written under that key.
func CheckRunStart(run SyncRun) error {
	t, ok := RunIDStart(run.ID)
	if !ok || run.Started.IsZero() || t.Equal(run.Started.UTC().Truncate(100*time.Nanosecond)) {
		return nil
	}
	return fmt.Errorf("run %s is said to have started at %s, not when its ID says", run.ID,
		run.Started.UTC().Format(time.RFC3339Nano))
}

// RunIDStart returns the start a NewRunID ID holds, and false for any other ID: the IDs of runs recorded before
// IDs carried their start.
func RunIDStart(id string) (time.Time, bool) {
	n := len(runIDTime)
	if len(id) != n+1+runIDRandom || id[n] != '-' {
		return time.Time{}, false
	}
	for _, c := range id[n+1:] {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return time.Time{}, false
		}
	}
	t, err := time.Parse(runIDTime, id[:n])
	if err != nil || t.Format(runIDTime) != id[:n] {
		// Only the one spelling NewRunID writes, so that one run has one ID.
		return time.Time{}, false
	}
	return t, true
}

// SyncRun summarises one revocation sync run.
type SyncRun struct {
	ID         string
	Started    time.Time
	Finished   time.Time
	Trigger    string // timer, manual, admin
	Resumed    int    // open items from earlier runs
	Downloaded int
	Foreign    int // items routed to another CA, counted on every offer: each takes a place in the download
	Revoked    int
	NotFound   int
	Failed     int
	Uploaded   int
	Errors     []string
	// Error says why the run stopped short (the error the run returned, also the last of Errors); "" when it ran
	// to its end, which it may have done with some items failing (Errors).
	Error string
}

// KeyHash is the Record.PublicKey of a public key: the hex SHA-256 of its DER SubjectPublicKeyInfo, which binds a
// record (replays, renewals, compromised-key marks) to the key; "" for a key that cannot be marshalled.
func KeyHash(pub crypto.PublicKey) string {
	spki, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return ""
	}
	return SPKIHash(spki)
}

// SPKIHash is KeyHash of a key already in its DER SubjectPublicKeyInfo form.
func SPKIHash(spki []byte) string {
	sum := sha256.Sum256(spki)
	return hex.EncodeToString(sum[:])
}

// ListJSON is how a store writes a list column (the SANs): JSON without HTML escapes. json.Marshal's escapes
// (\u0026 for '&') make a list up to six times longer than its names, and the names policy allows (32 URIs of 512
// characters) would then no longer fit in one Table Storage property; stores measure a list by this encoding.
func ListJSON(v []string) string {
	var b strings.Builder
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v) // a []string always encodes
	return strings.TrimSuffix(b.String(), "\n")
}
