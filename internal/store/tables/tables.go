// Package tables is the store.Store on Azure Table Storage (and Azurite locally), through the aztables SDK.
//
// Layout (prefix + name for every table):
//
//	certs    PartitionKey = "certs", RowKey = canonical serial            records
//	         PartitionKey = "certs", RowKey = "key-" + hex sha256(key)    idempotency bindings
//	revoked  PartitionKey = "revoked", RowKey = canonical serial    the CRL's source, listed with $select
//	         PartitionKey = "compromisedkey", RowKey = hex sha256(SubjectPublicKeyInfo)   keys revoked for keyCompromise
//	meta     PartitionKey = "meta", RowKey = name
//	         PartitionKey = "backlog", RowKey = hex sha256(SubjectPublicKeyInfo)   per-key backlogs, pruned by age
//	revreq   PartitionKey = "revreq", RowKey = hex sha256(RequestContext)
//	runs     PartitionKey = "runs", RowKey = inverted start time + "_" + run ID (newest first), pruned by age
//
// Records and bindings share one partition, so that every write to the certs table can join an entity-group
// transaction: a record's insert with its binding's insert (or ETag-conditioned replace), and the writes of
// concurrent enrollments with each other (group commit, commit.go). Everywhere else a write is a single-entity
// insert (AddEntity) or an ETag-conditioned update (UpdateEntity with IfMatch): a merge for records and revocation
// requests, which keeps the properties a newer version added (tables.go, merge), a replace for the meta documents
// and a binding moved to another serial. Nothing here upserts, and nothing is deleted but expired sync runs' rows
// (PruneRuns) and per-key backlogs (DeleteBacklog, PruneBacklogs). Each written entity carries a random WriteID so that when the SDK retries a write whose first
// response was lost, the resulting 409 or 412 is recognised as our own write and reported as the success it was.
//
// Errors: 404, 409 and 412 map to store.ErrNotFound, store.ErrExists and store.ErrConflict; throttling, server
// errors, authorisation failures, a missing table, transport errors and timeouts map to store.ErrUnavailable,
// which the HTTP edge turns into 503. Calls are bounded by a short per-call timeout and a small retry budget so
// that a dead backend fails fast instead of retrying for minutes (the azcore default).
package tables

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/runtime"
	"github.com/Azure/azure-sdk-for-go/sdk/data/aztables"

	"github.com/azscep/azscep/internal/store"
	"github.com/azscep/azscep/internal/transport"
)

// Table name suffixes; the configured prefix goes in front of each.
const (
	TableCerts    = "certs"
	TableRevoked  = "revoked"
	TableMeta     = "meta"
	TableRevReq   = "revreq"
	TableRuns     = "runs"
	prefixMaxLen  = 63 - len(TableRevoked)
	prefixConnKey = "TablePrefix"
)

// Defaults for the call budget; see WithCallTimeout and WithRetry.
const (
	DefaultCallTimeout = 10 * time.Second
	defaultTryTimeout  = 5 * time.Second
)

// queryTryTimeout is the least time one try of a query page gets. The service executes a query for up to five
// seconds and then answers with what it found, possibly nothing, and a continuation token; it allots the request
// 30 seconds with its scheduling (Query Timeout and Pagination). A try cut at the write-sized TryTimeout (5 s)
// would cut exactly those pages, on every try, so that a listing whose filter the service needs a full page's time
// for (the pending records among a large partition) could never finish. The page's call timeout still bounds it.
const queryTryTimeout = 30 * time.Second

// DefaultRetry is the retry policy unless WithRetry says otherwise: two retries with short delays, so that a
// dead backend answers ErrUnavailable within a second or two instead of after the SDK's minutes of back-off.
var DefaultRetry = policy.RetryOptions{
	MaxRetries:    2,
	TryTimeout:    defaultTryTimeout,
	RetryDelay:    100 * time.Millisecond,
	MaxRetryDelay: 500 * time.Millisecond,
}

// Option configures a Store.
type Option func(*config)

type config struct {
	callTimeout time.Duration
	retry       policy.RetryOptions
	now         func() time.Time
	transport   policy.Transporter
	maxScan     int   // entities one Search call examines at most; a field so tests can lower it
	maxAnswer   int64 // maxAnswerBytes; a field so tests can lower it
}

// WithCallTimeout bounds each call to the service (each page, for listings), retries included.
func WithCallTimeout(d time.Duration) Option {
	return func(c *config) { c.callTimeout = d }
}

// WithRetry replaces DefaultRetry.
func WithRetry(r policy.RetryOptions) Option {
	return func(c *config) { c.retry = r }
}

// WithClock sets the clock for Created/Updated stamps, so tests can drive the sweeper's view of time.
func WithClock(now func() time.Time) Option {
	return func(c *config) { c.now = now }
}

// WithTransport sets the HTTP transport, for tests that need to observe or break the wire.
func WithTransport(t policy.Transporter) Option {
	return func(c *config) { c.transport = t }
}

// Store is the Table Storage store.Store. It is safe for concurrent use.
type Store struct {
	cfg   config
	svc   *aztables.ServiceClient
	names [5]string
	certs *aztables.Client
	// certsCommit sends every write to the certs table (commit.go).
	certsCommit *committer
	revoked     *aztables.Client
	meta        *aztables.Client
	revreq      *aztables.Client
	runs        *aztables.Client
}

var _ store.Store = (*Store)(nil)

// NewFromConnectionString connects with a storage connection string in its full form (Azurite or an account
// key; the SDK rejects the UseDevelopmentStorage=true shorthand). A TablePrefix=... element in the connection
// string, which the SDK does not know, is removed and put in front of prefix: test harnesses use it to give
// every test its own tables.
func NewFromConnectionString(conn, prefix string, opts ...Option) (*Store, error) {
	conn, connPrefix := splitPrefix(conn)
	cfg := newConfig(opts)
	svc, err := aztables.NewServiceClientFromConnectionString(conn, cfg.clientOptions())
	if err != nil {
		// The SDK's message never includes the string itself, so the account key cannot leak from here.
		return nil, fmt.Errorf("tables: parsing connection string: %w", err)
	}
	return newStore(svc, connPrefix+prefix, cfg)
}

// NewWithCredential connects to tableEndpointURL (https://<account>.table.core.windows.net) with an Entra
// credential, normally the function app's managed identity, which needs the Storage Table Data Contributor role.
func NewWithCredential(tableEndpointURL string, cred azcore.TokenCredential, prefix string, opts ...Option) (*Store, error) {
	cfg := newConfig(opts)
	svc, err := aztables.NewServiceClient(tableEndpointURL, cred, cfg.clientOptions())
	if err != nil {
		return nil, fmt.Errorf("tables: creating client for %s: %w", tableEndpointURL, err)
	}
	return newStore(svc, prefix, cfg)
}

func newConfig(opts []Option) config {
	cfg := config{callTimeout: DefaultCallTimeout, retry: DefaultRetry, now: time.Now, maxScan: maxScan, maxAnswer: maxAnswerBytes}
	for _, o := range opts {
		o(&cfg)
	}
	return cfg
}

func (c *config) clientOptions() *aztables.ClientOptions {
	o := &aztables.ClientOptions{}
	o.Retry = c.retry
	o.Telemetry.Disabled = true
	o.Transport = captureTransport{inner: transport.LimitAnswers(c.transport, c.maxAnswer)}
	return o
}

// maxAnswerBytes caps one Table Storage answer. A page of 1,000 records with their certificates is a few MiB; a page
// of records an enrollment filled with names JSON escapes (a 16 KiB CSR of URIs of double quotes) is some 100 MiB,
// which listRaw reads in smaller pages instead.
const maxAnswerBytes = 64 << 20

// splitPrefix removes the TablePrefix element from a connection string.
func splitPrefix(conn string) (rest, prefix string) {
	var kept []string
	for part := range strings.SplitSeq(conn, ";") {
		if k, v, ok := strings.Cut(part, "="); ok && strings.EqualFold(strings.TrimSpace(k), prefixConnKey) {
			prefix = strings.TrimSpace(v)
			continue
		}
		kept = append(kept, part)
	}
	return strings.Join(kept, ";"), prefix
}

// ValidPrefix reports whether prefix makes valid table names: alphanumeric, starting with a letter, and short
// enough for the longest table name to stay within 63 characters.
func ValidPrefix(prefix string) error {
	if len(prefix) > prefixMaxLen {
		return fmt.Errorf("tables: prefix %q is longer than %d characters", prefix, prefixMaxLen)
	}
	for i, c := range prefix {
		letter := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
		if !letter && (i == 0 || !(c >= '0' && c <= '9')) {
			return fmt.Errorf("tables: prefix %q must be letters and digits, starting with a letter", prefix)
		}
	}
	return nil
}

func newStore(svc *aztables.ServiceClient, prefix string, cfg config) (*Store, error) {
	if err := ValidPrefix(prefix); err != nil {
		return nil, err
	}
	s := &Store{cfg: cfg, svc: svc}
	for i, n := range []string{TableCerts, TableRevoked, TableMeta, TableRevReq, TableRuns} {
		s.names[i] = prefix + n
	}
	s.certs = svc.NewClient(s.names[0])
	s.certsCommit = &committer{s: s, table: s.certs}
	s.revoked = svc.NewClient(s.names[1])
	s.meta = svc.NewClient(s.names[2])
	s.revreq = svc.NewClient(s.names[3])
	s.runs = svc.NewClient(s.names[4])
	return s, nil
}

// TableNames lists the five table names in use, for deployment checks and tests.
func (s *Store) TableNames() []string { return s.names[:] }

// EnsureTables creates the tables that do not exist yet, then carries the records and bindings older versions
// wrote in their layouts of the certs table forward (upgrade.go). Run it at start-up (or from deployment);
// without the tables every call fails with ErrUnavailable.
func (s *Store) EnsureTables(ctx context.Context) error {
	for _, name := range s.names {
		cctx, cancel := s.callCtx(ctx)
		_, err := s.svc.CreateTable(cctx, name, nil)
		cancel()
		var re *azcore.ResponseError
		if errors.As(err, &re) && re.StatusCode == http.StatusConflict && re.ErrorCode != string(aztables.TableBeingDeleted) {
			continue // TableAlreadyExists
		}
		if err != nil {
			return mapErr("creating table "+name, err)
		}
	}
	return s.upgradeLayout(ctx)
}

// Ping implements store.Store with the cheapest query there is: one key from the meta table.
func (s *Store) Ping(ctx context.Context) error {
	cctx, cancel := s.callCtx(ctx)
	defer cancel()
	top := int32(1)
	filter := "PartitionKey eq 'meta'"
	sel := "RowKey"
	p := s.meta.NewListEntitiesPager(&aztables.ListEntitiesOptions{Filter: &filter, Select: &sel, Top: &top})
	if _, err := p.NextPage(cctx); err != nil {
		return mapErr("ping", err)
	}
	return nil
}

func (s *Store) callCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, s.cfg.callTimeout)
}

// stamp is the store's notion of now, at the service's resolution.
func (s *Store) stamp() time.Time { return normTime(s.cfg.now()) }

// statusErr is a call the service answered with an error status: one line with the status and error code,
// the store's sentinel, and the SDK's error (when the status came from one) reachable with errors.As.
type statusErr struct {
	op       string
	status   int
	code     string
	sentinel error
	re       *azcore.ResponseError
}

func (e *statusErr) Error() string {
	code := e.code
	if code == "" {
		code = http.StatusText(e.status)
	}
	if e.sentinel == nil {
		return fmt.Sprintf("tables: %s: HTTP %d %s", e.op, e.status, code)
	}
	return fmt.Sprintf("tables: %s: %v (HTTP %d %s)", e.op, e.sentinel, e.status, code)
}

func (e *statusErr) Unwrap() []error {
	var out []error
	if e.sentinel != nil {
		out = append(out, e.sentinel)
	}
	if e.re != nil {
		out = append(out, e.re)
	}
	return out
}

// statusError maps an error status from the service to the store's sentinels.
func statusError(op string, status int, code string, re *azcore.ResponseError) error {
	var sentinel error
	switch {
	case code == string(aztables.TableNotFound), code == string(aztables.TableBeingDeleted):
		// A missing table is a deployment fault, not a missing record: answering "not found" here would make
		// the CA re-issue or report certificates as unknown. A table deleted in the last 40 seconds or so answers
		// 409 TableBeingDeleted (to CreateTable, and to writes), which is no entity that exists either.
		sentinel = store.ErrUnavailable
	case status == http.StatusNotFound:
		sentinel = store.ErrNotFound
	case status == http.StatusConflict:
		sentinel = store.ErrExists
	case status == http.StatusPreconditionFailed:
		sentinel = store.ErrConflict
	case status == http.StatusUnauthorized, status == http.StatusForbidden, status == http.StatusRequestTimeout,
		status == http.StatusTooManyRequests, status >= 500:
		sentinel = store.ErrUnavailable
	}
	return &statusErr{op: op, status: status, code: code, sentinel: sentinel, re: re}
}

// mapErr turns an SDK error into the store's sentinels.
func mapErr(op string, err error) error {
	if err == nil {
		return nil
	}
	var re *azcore.ResponseError
	if errors.As(err, &re) {
		return statusError(op, re.StatusCode, re.ErrorCode, re)
	}
	err = withoutQuery(err)
	if errors.Is(err, context.Canceled) {
		return fmt.Errorf("tables: %s: %w", op, err)
	}
	// Transport failures and deadlines: the backend did not answer in time.
	return fmt.Errorf("tables: %s: %w: %w", op, store.ErrUnavailable, err)
}

// withoutQuery drops the query string from the request URL a transport error (*url.Error) carries in its message:
// with a SAS connection string that query holds the signature, and these errors are logged.
func withoutQuery(err error) error {
	var ue *url.Error
	if !errors.As(err, &ue) {
		return err
	}
	bare := "(request URL)"
	if u, perr := url.Parse(ue.URL); perr == nil {
		u.RawQuery, u.ForceQuery, u.Fragment, u.User = "", false, "", nil
		bare = u.String()
	}
	clean := &url.Error{Op: ue.Op, URL: bare, Err: ue.Err}
	if err == error(ue) {
		return clean
	}
	return &redactedErr{msg: strings.ReplaceAll(err.Error(), ue.URL, bare), clean: clean}
}

// redactedErr is an error whose message had a request URL's query removed; it unwraps to the cleaned *url.Error.
type redactedErr struct {
	msg   string
	clean error
}

func (e *redactedErr) Error() string { return e.msg }
func (e *redactedErr) Unwrap() error { return e.clean }

func newWriteID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// read is a point read; it returns the entity's properties and ETag.
func (s *Store) read(ctx context.Context, c *aztables.Client, op, pk, rk string) (props, string, error) {
	cctx, cancel := s.callCtx(ctx)
	defer cancel()
	resp, err := c.GetEntity(cctx, pk, rk, nil)
	if err != nil {
		return nil, "", mapErr(op, err)
	}
	p, etag, err := decodeEntity(resp.Value)
	if err != nil {
		return nil, "", fmt.Errorf("tables: %s: %w", op, err)
	}
	if resp.ETag != "" {
		etag = string(resp.ETag)
	}
	return p, etag, nil
}

// add inserts e. A 409 whose stored entity carries our WriteID is our own insert replayed by the SDK's retry
// after a lost response, and counts as success.
func (s *Store) add(ctx context.Context, c *aztables.Client, op string, e entity) (string, error) {
	id := newWriteID()
	e.set(propWriteID, id)
	body, err := e.marshal()
	if err != nil {
		return "", fmt.Errorf("tables: %s: %w", op, err)
	}
	etag, err := s.write(ctx, c, op, e, aztables.TransactionAction{ActionType: aztables.TransactionTypeAdd, Entity: body})
	if errors.Is(err, store.ErrExists) {
		if p, cur, rerr := s.read(ctx, c, op, e.pk(), e.rk()); rerr == nil && p.str(propWriteID) == id {
			return cur, nil
		}
	}
	return etag, err
}

// replace overwrites e if it is still at etag: the properties e leaves out are removed.
func (s *Store) replace(ctx context.Context, c *aztables.Client, op string, e entity, etag string) (string, error) {
	return s.update(ctx, c, op, e, etag, false)
}

// merge writes e's properties, its cleared ones as empty values, if the entity is still at etag; properties e does
// not name stay as they are. Records and revocation requests are written back this way: a newer version's
// instance, serving the same tables while a deployment rolls (or after a rollback), may have added properties
// this version does not know, and a replace would drop them whenever this version moved the record. The other
// side of it: a version that stops using a property still writes it cleared, for as long as a build that reads it
// may run beside it or be rolled back to, or that build reads the value last written before.
func (s *Store) merge(ctx context.Context, c *aztables.Client, op string, e entity, etag string) (string, error) {
	return s.update(ctx, c, op, e, etag, true)
}

// update is replace or merge. A 412 whose stored entity carries our WriteID is our own write replayed by the SDK's
// retry after a lost response, and counts as success.
func (s *Store) update(ctx context.Context, c *aztables.Client, op string, e entity, etag string, merge bool) (string, error) {
	if etag == "" {
		return "", fmt.Errorf("tables: %s: no ETag: %w", op, store.ErrConflict)
	}
	id := newWriteID()
	e.set(propWriteID, id)
	encode, action := e.marshal, aztables.TransactionTypeUpdateReplace
	if merge {
		encode, action = e.marshalMerge, aztables.TransactionTypeUpdateMerge
	}
	body, err := encode()
	if err != nil {
		return "", fmt.Errorf("tables: %s: %w", op, err)
	}
	match := azcore.ETag(etag)
	etag, err = s.write(ctx, c, op, e, aztables.TransactionAction{ActionType: action, Entity: body, IfMatch: &match})
	if errors.Is(err, store.ErrConflict) {
		if p, cur, rerr := s.read(ctx, c, op, e.pk(), e.rk()); rerr == nil && p.str(propWriteID) == id {
			return cur, nil
		}
	}
	return etag, err
}

// write sends one insert, replace or merge and returns the new ETag: through the group commit for the certs table,
// alone for the others.
func (s *Store) write(ctx context.Context, c *aztables.Client, op string, e entity, a aztables.TransactionAction) (string, error) {
	if c == s.certs {
		res, err := s.certsCommit.commit(ctx, op, []aztables.TransactionAction{a}, []string{e.rk()})
		if err != nil {
			return "", err
		}
		if r := res[len(res)-1]; r.status >= 300 {
			return "", statusError(op, r.status, r.code, nil)
		}
		return res[0].etag, nil
	}
	cctx, cancel := s.callCtx(ctx)
	defer cancel()
	if a.ActionType == aztables.TransactionTypeAdd {
		resp, err := c.AddEntity(cctx, a.Entity, nil)
		if err != nil {
			return "", mapErr(op, err)
		}
		return string(resp.ETag), nil
	}
	mode := aztables.UpdateModeReplace
	if a.ActionType == aztables.TransactionTypeUpdateMerge {
		mode = aztables.UpdateModeMerge
	}
	resp, err := c.UpdateEntity(cctx, a.Entity, &aztables.UpdateEntityOptions{UpdateMode: mode, IfMatch: a.IfMatch})
	if err != nil {
		return "", mapErr(op, err)
	}
	return string(resp.ETag), nil
}

// list runs a query and calls fn for each entity until fn returns false or the results end. Each page gets
// its own call timeout so that long listings (the CRL's 100,000 entries) are not cut short, and its tries are not
// cut before the service's own query time (queryTryTimeout).
func (s *Store) list(ctx context.Context, c *aztables.Client, op string, o *aztables.ListEntitiesOptions, fn func(p props, etag string) (bool, error)) error {
	return s.listRaw(ctx, c, op, o, func(raw []byte) (bool, error) {
		p, etag, err := decodeEntity(raw)
		if err != nil {
			return false, err
		}
		return fn(p, etag)
	})
}

// listRaw is list with the entity's JSON, for hot listings that decode into a struct.
//
// A page the service answers in more bytes than the client accepts (maxAnswerBytes) is asked for again, from the
// same continuation, in pages of half as many entities, down to one: the records an enrollment can leave (a CSR's
// 16 KiB of names, escaped twice over in the answer's SANs column and carried again in both certificates) run to
// some 100 KB each in an answer, so that the service's full page of 1,000 would fail the listing every time.
func (s *Store) listRaw(ctx context.Context, c *aztables.Client, op string, o *aztables.ListEntitiesOptions, fn func(raw []byte) (bool, error)) error {
	_, err := s.listRawBounded(ctx, c, op, o, 0, fn)
	return err
}

// listRawBounded is listRaw asking for at most maxPages pages (0: no bound). When it stops at the bound with more to
// list, it returns the service's continuation after the last page, whose entities fn saw all: a listing with the
// same filter goes on from there.
func (s *Store) listRawBounded(ctx context.Context, c *aztables.Client, op string, o *aztables.ListEntitiesOptions,
	maxPages int, fn func(raw []byte) (bool, error)) (*serverContinuation, error) {
	opts := *o
	retry := s.cfg.retry
	retry.TryTimeout = max(retry.TryTimeout, queryTryTimeout)
	newPager := func() *runtime.Pager[aztables.ListEntitiesResponse] {
		o := opts // the pager keeps its options; opts goes on to follow the continuation
		return c.NewListEntitiesPager(&o)
	}
	pager := newPager()
	for pages := 0; pager.More(); pages++ {
		if maxPages > 0 && pages == maxPages && opts.NextPartitionKey != nil {
			return &serverContinuation{PK: *opts.NextPartitionKey, RK: deref(opts.NextRowKey)}, nil
		}
		cctx, cancel := s.callCtx(ctx)
		page, err := pager.NextPage(policy.WithRetryOptions(cctx, retry))
		cancel()
		if top := int32(pageSize); errors.Is(err, transport.ErrAnswerTooLarge) {
			if opts.Top != nil {
				top = *opts.Top
			}
			if top > 1 {
				// opts holds the continuation this page was asked for with: the pager starts from it again.
				half := top / 2
				opts.Top = &half
				pager = newPager()
				pages--
				continue
			}
		}
		if err != nil {
			return nil, mapErr(op, err)
		}
		opts.NextPartitionKey, opts.NextRowKey = page.NextPartitionKey, page.NextRowKey
		for _, raw := range page.Entities {
			more, err := fn(raw)
			if err != nil {
				return nil, fmt.Errorf("tables: %s: %w", op, err)
			}
			if !more {
				return nil, nil
			}
		}
	}
	return nil, nil
}

// serverContinuation is where the service said a listing goes on (x-ms-continuation-NextPartitionKey and
// -NextRowKey): opaque, valid for the same query.
type serverContinuation struct {
	PK string `json:"p"`
	RK string `json:"r,omitempty"`
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// quote renders s as an OData string literal; doubling single quotes is the only escape the grammar has.
func quote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", "''") + "'"
}

// dateLiteral renders t as an OData datetime literal.
func dateLiteral(t time.Time) string {
	return "datetime'" + normTime(t).Format(timeLayout) + "'"
}
