package entra

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"golang.org/x/time/rate"

	"github.com/azscep/azscep/internal/ctxtime"
	"github.com/azscep/azscep/internal/transport"
)

// Defaults for GraphConfig.
const (
	DefaultGraphBaseURL     = "https://graph.microsoft.com/"
	DefaultPositiveTTL      = 5 * time.Minute
	DefaultNegativeTTL      = time.Minute
	DefaultMaxCacheEntries  = 10000
	defaultGraphTimeout     = 10 * time.Second
	maxGraphBodyBytes       = 1 << 20
	maxGraphPages           = 5
	graphTokenRefreshMargin = 5 * time.Minute
)

// DefaultDeviceLookupBurst and DefaultDeviceLookupInterval are a user's budget of device questions that reach Graph
// (GraphConfig.DeviceLookupBurst): a user enrolling a few devices, and retrying now and then, never meets it; a token
// naming random device IDs at the endpoint's request rate (5/s) gets 20 lookups and then 4 a minute.
const (
	DefaultDeviceLookupBurst    = 20
	DefaultDeviceLookupInterval = 15 * time.Second
)

// ErrInvalidID reports a user object ID or device ID that is not a GUID. No
// Graph call is made for it; for a device ID taken from a CSR it simply means
// "not a device this user can own".
var ErrInvalidID = errors.New("entra: ID is not a GUID")

// GraphConfig configures Directory.
type GraphConfig struct {
	// Credential obtains app-only Graph tokens (managed identity in Azure).
	// The identity needs User.Read.All (a user's account state),
	// Application.Read.All (an application's service principal, its app
	// role assignments and the API's own service principal),
	// Directory.Read.All where a user's app role assignments are re-read
	// (UserAppRoles: the admin API),
	// Device.Read.All (registered owners and accountEnabled) and
	// DeviceManagementManagedDevices.Read.All (a device's Intune primary user
	// and managementState). In a tenant without Intune, Graph answers those
	// reads that the tenant has no Intune, which Verdict takes for no managed
	// device; in one with Intune, a missing permission is a refusal (403),
	// ErrUnavailable.
	Credential azcore.TokenCredential
	// BaseURL is the Graph root (national clouds, tests); default
	// https://graph.microsoft.com/. Must be https unless loopback.
	BaseURL string
	// Scope requested from Credential; default "<BaseURL origin>/.default".
	Scope string
	// HTTPClient sends Graph requests; nil means a 10 s timeout client.
	HTTPClient *http.Client
	// PositiveTTL / NegativeTTL bound how long an "owns" / "does not own"
	// (or "disabled") answer, and an enabled / disabled or missing account, is
	// reused. Negative answers are kept shorter so a device or account that
	// was just enrolled or re-enabled is usable quickly; PositiveTTL is also
	// how long a device or account an administrator has just disabled may
	// still be answered "owned" or "enabled".
	PositiveTTL time.Duration
	NegativeTTL time.Duration
	// MaxCacheEntries bounds each answer cache (device answers, accounts), and how many users' device lookup
	// budgets are kept.
	MaxCacheEntries int
	// DeviceLookupBurst and DeviceLookupInterval budget the device questions (Verdict, VerdictManaged) one user
	// may send to Graph: DeviceLookupBurst at once, then one more every DeviceLookupInterval; answers from the
	// cache cost nothing. A self-service caller chooses the device IDs and every unknown one misses the cache and
	// costs up to two Graph calls, so without a budget one token naming random GUIDs could spend the app's Graph
	// and Intune throttling allowance, and every user's device self-service would be answered 503. Over budget,
	// a question is answered with a *LookupBudgetError and no Graph call. Defaults: DefaultDeviceLookupBurst,
	// DefaultDeviceLookupInterval.
	DeviceLookupBurst    int
	DeviceLookupInterval time.Duration
	// Clock is time.Now unless a test needs to move time.
	Clock func() time.Time
	// APIAppID is the API's application (client) ID. With it, an app-only token's roles are re-read too: the
	// roles of the API that are assigned to the application now (AppRoles), and a user's where a door asks
	// (UserAppRoles). Empty skips that re-read.
	APIAppID string
	// TenantID, if set, is the tenant whose users and applications are asked about (the API's). The identity
	// reads Graph in its own tenant, so a Graph token for another tenant is refused (ErrWrongTenant) rather than
	// every caller being answered "no such account".
	TenantID string
}

// Directory reads Microsoft Graph for the questions a token cannot answer:
// whether the account is still enabled, still has that UPN and has not had
// its sessions revoked since the token was issued (Account; for an app-only
// token, whether its service principal is enabled: ServicePrincipal), and whether
// the user owns a device, for CSR.SelfService device certificates (a device an
// administrator disabled in Entra, or told Intune to retire, wipe or delete, is
// not owned). It is safe for concurrent use.
type Directory struct {
	cfg     GraphConfig
	base    *url.URL
	tokenMu sync.Mutex
	token   azcore.AccessToken

	owned    *ttlCache[ownershipKey, DeviceAnswer]
	budgets  *ttlCache[string, *rate.Limiter] // device lookup budgets, by user object ID
	accounts *ttlCache[string, Account]
	roles    *ttlCache[string, []string]          // a principal's assigned API roles, by "app/" or "user/" and object ID
	api      *ttlCache[string, map[string]string] // "": the API's role values by ID, and "" its object ID

	refusedMu   sync.Mutex
	refused     map[string]Refusal // by Permission
	wrongTenant error              // the last Graph token's tenant was not TenantID
	// unfiltered is set once Graph refused $filter=resourceId on an appRoleAssignments list that it then served
	// without: the assignments are read whole from then on (assignedRoles).
	unfiltered atomic.Bool
}

// WrongTenant reports the last Graph token the credential gave was for another tenant than TenantID (nil once a
// token for the right one came), for /api/health.
func (d *Directory) WrongTenant() error {
	d.refusedMu.Lock()
	defer d.refusedMu.Unlock()
	return d.wrongTenant
}

// Refusal is Graph refusing the identity (401 or 403) the calls one permission allows, with nothing of that kind
// allowed since: the permission is not granted, or the platform still serves a token without it.
type Refusal struct {
	// Permission is the application permission those calls need, e.g. User.Read.All.
	Permission string
	Status     int
	Since      time.Time
}

// Refused lists the permissions whose calls Graph refuses now, in a stable order (for /api/health).
func (d *Directory) Refused() []Refusal {
	d.refusedMu.Lock()
	defer d.refusedMu.Unlock()
	var out []Refusal
	for _, r := range d.refused {
		out = append(out, r)
	}
	slices.SortFunc(out, func(a, b Refusal) int { return strings.Compare(a.Permission, b.Permission) })
	return out
}

// permissionFor names the application permission a Graph path needs.
func permissionFor(path string) string {
	switch {
	case strings.Contains(path, "/users/") && strings.HasSuffix(path, "/appRoleAssignments"):
		return "Directory.Read.All"
	case strings.Contains(path, "/users/"):
		return "User.Read.All"
	case strings.Contains(path, "/servicePrincipals"):
		return "Application.Read.All"
	case strings.Contains(path, "/deviceManagement/managedDevices"):
		return "DeviceManagementManagedDevices.Read.All"
	default:
		return "Device.Read.All"
	}
}

// noteAnswer keeps Refused's state per permission: a 401/403 starts (or continues) a refusal; an answer that says
// such a call was allowed (200, 404) ends it; throttling and server errors say nothing either way.
func (d *Directory) noteAnswer(path string, status int) {
	perm := permissionFor(path)
	d.refusedMu.Lock()
	defer d.refusedMu.Unlock()
	switch status {
	case http.StatusUnauthorized, http.StatusForbidden:
		r, ok := d.refused[perm]
		if !ok {
			r = Refusal{Permission: perm, Since: d.cfg.Clock()}
		}
		r.Status = status
		d.refused[perm] = r
	case http.StatusOK, http.StatusNotFound:
		delete(d.refused, perm)
	}
}

// ownershipKey is one cached question. managed distinguishes "does user own
// the Intune managed device with this ID" (VerdictManaged) from "does user own
// the device with this ID, Entra device first" (Verdict): the same GUID can be
// an Entra deviceId and a managed-device ID of different devices, with
// different answers.
type ownershipKey struct {
	user, device string
	managed      bool
}

// LookupBudgetError answers a device question a user asked over their budget of Graph lookups
// (GraphConfig.DeviceLookupBurst): no Graph call was made. It is the caller's doing, not Graph's, so it does not
// wrap ErrUnavailable.
type LookupBudgetError struct {
	// RetryAfter is when the user's next lookup is allowed.
	RetryAfter time.Duration
}

func (e *LookupBudgetError) Error() string {
	return fmt.Sprintf("entra: too many device lookups for this user; next one in %s", e.RetryAfter)
}

// spend takes one device lookup from user's budget, or reports how long until one is available.
func (d *Directory) spend(user string) (time.Duration, bool) {
	now := d.cfg.Clock()
	lim, ok := d.budgets.get(user)
	if !ok {
		lim = rate.NewLimiter(rate.Every(d.cfg.DeviceLookupInterval), d.cfg.DeviceLookupBurst)
	}
	res := lim.ReserveN(now, 1)
	if wait := res.DelayFrom(now); wait > 0 {
		res.CancelAt(now) // a refused lookup must not use up the one it waits for
		return wait, false
	}
	// A budget untouched for as long as it takes to refill is full again, the same as a new one: it need be kept
	// no longer than that.
	d.budgets.put(user, lim, now, time.Duration(d.cfg.DeviceLookupBurst)*d.cfg.DeviceLookupInterval)
	return 0, true
}

// DeviceVerdict is Directory's answer for one (user, device) question.
type DeviceVerdict int

const (
	// DeviceNotOwned: no such device, or the user is neither a registered
	// owner of it nor its Intune primary user.
	DeviceNotOwned DeviceVerdict = iota
	// DeviceOwned: the user owns the device and its Entra device object, if
	// it has one, is enabled.
	DeviceOwned
	// DeviceDisabled: the user owns the device, but an administrator has
	// disabled its Entra device object (accountEnabled=false, e.g. a device
	// reported lost or stolen). Graph keeps the registered owners of a
	// disabled device, so ownership alone must not grant anything. Only an
	// owner learns that the device is disabled: for anyone else a disabled
	// device is DeviceNotOwned.
	DeviceDisabled
	// DeviceRetiring: the user owns the device, but Intune has been told to
	// retire, wipe or delete it (managementState retireIssued, retirePending,
	// retireFailed, wipeIssued, wipePending, wipeFailed or deletePending: see
	// retiringStates). Until the device checks in, Intune and Graph still show
	// it with its primary user and owners, so ownership alone must not grant a
	// new certificate for a device its organisation is taking back. As for
	// DeviceDisabled, only an owner learns it.
	DeviceRetiring
)

// retiringStates are the Intune managementState values (Graph managedDevice,
// enum managementState:
// https://learn.microsoft.com/graph/api/resources/intune-devices-managementstate?view=graph-rest-1.0)
// that say an administrator has ordered the device retired, wiped or deleted
// and has not cancelled it (retireCanceled, wipeCanceled). A failed command
// still stands for what the administrator wants: it is not a device to certify.
var retiringStates = []string{"retireIssued", "retirePending", "retireFailed", "wipeIssued", "wipePending", "wipeFailed",
	"deletePending"}

// DeviceAnswer is Directory's answer for one (user, device) question, with the Entra device it read.
type DeviceAnswer struct {
	Verdict DeviceVerdict
	// ObjectID is the directory object ID (id, lower case) of the Entra device whose accountEnabled the verdict
	// read: the device itself, or the Entra device behind an Intune managed device. A deleted device's entry in
	// Graph's devices delta names only this ID, so it is what finds the certificate again once the device is
	// deleted. "" when no Entra device was read (an Intune managed device without one, or a verdict that was
	// decided before: not owned, retiring).
	ObjectID string
}

func (v DeviceVerdict) String() string {
	switch v {
	case DeviceOwned:
		return "owned"
	case DeviceDisabled:
		return "disabled"
	case DeviceRetiring:
		return "retiring"
	default:
		return "not owned"
	}
}

// NewDirectory validates cfg. It makes no network calls.
func NewDirectory(cfg GraphConfig) (*Directory, error) {
	if cfg.Credential == nil {
		return nil, errors.New("entra: GraphConfig.Credential is required")
	}
	if cfg.BaseURL == "" {
		cfg.BaseURL = DefaultGraphBaseURL
	}
	if !strings.HasSuffix(cfg.BaseURL, "/") {
		cfg.BaseURL += "/"
	}
	if err := checkServiceURL(cfg.BaseURL); err != nil {
		return nil, fmt.Errorf("entra: Graph BaseURL: %w", err)
	}
	base, err := url.Parse(cfg.BaseURL)
	if err != nil {
		return nil, fmt.Errorf("entra: Graph BaseURL: %w", err)
	}
	if cfg.Scope == "" {
		cfg.Scope = base.Scheme + "://" + base.Host + "/.default"
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{Timeout: defaultGraphTimeout}
	}
	if cfg.PositiveTTL <= 0 {
		cfg.PositiveTTL = DefaultPositiveTTL
	}
	if cfg.NegativeTTL <= 0 {
		cfg.NegativeTTL = DefaultNegativeTTL
	}
	if cfg.MaxCacheEntries <= 0 {
		cfg.MaxCacheEntries = DefaultMaxCacheEntries
	}
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	if cfg.DeviceLookupBurst <= 0 {
		cfg.DeviceLookupBurst = DefaultDeviceLookupBurst
	}
	if cfg.DeviceLookupInterval <= 0 {
		cfg.DeviceLookupInterval = DefaultDeviceLookupInterval
	}
	if cfg.APIAppID != "" && !isGUID(cfg.APIAppID) {
		// It goes into an OData key literal: only a GUID's shape keeps that URL what it means.
		return nil, fmt.Errorf("entra: GraphConfig.APIAppID %q is not a GUID", cfg.APIAppID)
	}
	return &Directory{cfg: cfg, base: base,
		owned:    newTTLCache[ownershipKey, DeviceAnswer](cfg.MaxCacheEntries, cfg.Clock),
		budgets:  newTTLCache[string, *rate.Limiter](cfg.MaxCacheEntries, cfg.Clock),
		accounts: newTTLCache[string, Account](cfg.MaxCacheEntries, cfg.Clock),
		roles:    newTTLCache[string, []string](cfg.MaxCacheEntries, cfg.Clock),
		api:      newTTLCache[string, map[string]string](1, cfg.Clock), refused: map[string]Refusal{}}, nil
}

// OwnsDevice reports whether userObjectID owns deviceID and may have a
// certificate for it: Verdict is DeviceOwned. A disabled or retiring device is not owned.
func (d *Directory) OwnsDevice(ctx context.Context, userObjectID, deviceID string) (bool, error) {
	v, err := d.Verdict(ctx, userObjectID, deviceID)
	return v == DeviceOwned, err
}

// OwnsManagedDevice reports whether userObjectID owns the Intune managed
// device managedDeviceID and may have a certificate naming it (an
// IntuneDeviceId:// URI): VerdictManaged is DeviceOwned.
func (d *Directory) OwnsManagedDevice(ctx context.Context, userObjectID, managedDeviceID string) (bool, error) {
	v, err := d.VerdictManaged(ctx, userObjectID, managedDeviceID)
	return v == DeviceOwned, err
}

// Verdict answers whether userObjectID owns deviceID, which may be either an
// Entra device ID (the `deviceId` property, not the directory object id) or an
// Intune managed-device ID:
//
//  1. GET /v1.0/devices(deviceId='{id}')/registeredOwners?$select=id — the
//     user must be a registered owner;
//  2. if no such Entra device: GET /v1.0/deviceManagement/managedDevices/{id}
//     — the user must be the Intune primary user (userId) or a registered
//     owner of the device's azureADDeviceId (step 1 for that ID), and an
//     owner's device that Intune is retiring, wiping or deleting
//     (managementState) is DeviceRetiring;
//  3. only when the user owns the device: GET
//     /v1.0/devices(deviceId='{id}')?$select=id,accountEnabled for the Entra
//     device that granted ownership (for a primary user, the managed device's
//     azureADDeviceId, if any) — accountEnabled=false is DeviceDisabled. A
//     primary user's managed device without an Entra device (no
//     azureADDeviceId, or 404) stays owned, as Intune-only devices have none;
//  4. only when an Entra device found in step 1 is owned and enabled: GET
//     /v1.0/deviceManagement/managedDevices?$filter=azureADDeviceId eq '{id}'
//     — a managed device behind it that Intune is retiring, wiping or
//     deleting (managementState) is DeviceRetiring; none at all is fine.
//
// In a tenant without Intune, Graph answers the managedDevices GETs of steps 2
// and 4 400 "Request not applicable to target tenant." (see noIntune): there
// is no managed device, so step 2 is DeviceNotOwned and step 4 leaves the
// Entra device's verdict as it is. Every other answer is as below.
//
// Steps 3 and 4 run only for owners, so unknown devices and other users'
// devices cost no more Graph calls than before they existed. Unknown devices are
// DeviceNotOwned. Any Graph failure (transport, 401/403, 429, 5xx, unreadable
// body, a device answer without accountEnabled) is an error wrapping
// ErrUnavailable, never DeviceOwned. Answers are cached per (user, device),
// DeviceOwned for PositiveTTL and the others for NegativeTTL; errors are not
// cached. A question the cache does not answer spends one of the user's
// device lookups (GraphConfig.DeviceLookupBurst); with none left it is a
// *LookupBudgetError, and Graph is not asked.
//
// Because step 1 comes first, an Entra device whose deviceId equals someone
// else's managed-device ID answers for that ID here. Use VerdictManaged when
// the ID will be read as an Intune managed-device ID (IntuneDeviceId://).
func (d *Directory) Verdict(ctx context.Context, userObjectID, deviceID string) (DeviceVerdict, error) {
	a, err := d.verdict(ctx, userObjectID, deviceID, false)
	return a.Verdict, err
}

// Answer is Verdict with the object ID of the Entra device it read (DeviceAnswer), at no extra Graph call: the
// question for a certificate that will be revoked when that device is deleted.
func (d *Directory) Answer(ctx context.Context, userObjectID, deviceID string) (DeviceAnswer, error) {
	return d.verdict(ctx, userObjectID, deviceID, false)
}

// VerdictManaged answers whether userObjectID owns the Intune managed device
// managedDeviceID, and only that: no Entra device is looked up by that ID, so
// owning an Entra device whose deviceId happens to equal it grants nothing.
// This is the question for a certificate carrying IntuneDeviceId://<id>,
// which relying parties read as an Intune managed-device ID.
//
//  1. GET /v1.0/deviceManagement/managedDevices/{id}?$select=id,userId,azureADDeviceId,managementState
//     — 404 is DeviceNotOwned; the user must be the Intune primary user
//     (userId) or a registered owner of the device's azureADDeviceId
//     (GET /v1.0/devices(deviceId='{azureADDeviceId}')/registeredOwners);
//     an owner's device that Intune is retiring, wiping or deleting
//     (managementState, see DeviceRetiring) is DeviceRetiring; in a tenant
//     without Intune (400 "Request not applicable to target tenant.") it is
//     DeviceNotOwned, as for a 404;
//  2. only when the user owns it: accountEnabled of the Entra device
//     azureADDeviceId, as in Verdict step 3 (false is DeviceDisabled; a
//     primary user's managed device without an Entra device stays owned).
//
// Errors and caching are as for Verdict, in cache entries of their own.
func (d *Directory) VerdictManaged(ctx context.Context, userObjectID, managedDeviceID string) (DeviceVerdict, error) {
	a, err := d.verdict(ctx, userObjectID, managedDeviceID, true)
	return a.Verdict, err
}

// AnswerManaged is VerdictManaged with the object ID of the Entra device behind the managed device (its
// azureADDeviceId), read by the accountEnabled check VerdictManaged makes anyway: "" for a managed device without
// one.
func (d *Directory) AnswerManaged(ctx context.Context, userObjectID, managedDeviceID string) (DeviceAnswer, error) {
	return d.verdict(ctx, userObjectID, managedDeviceID, true)
}

func (d *Directory) verdict(ctx context.Context, userObjectID, deviceID string, managed bool) (DeviceAnswer, error) {
	if !isGUID(userObjectID) {
		return DeviceAnswer{}, fmt.Errorf("%w: user object ID", ErrInvalidID)
	}
	if !isGUID(deviceID) {
		return DeviceAnswer{}, fmt.Errorf("%w: device ID", ErrInvalidID)
	}
	key := ownershipKey{user: normGUID(userObjectID), device: normGUID(deviceID), managed: managed}
	if a, ok := d.owned.get(key); ok {
		return a, nil
	}
	if wait, ok := d.spend(key.user); !ok {
		return DeviceAnswer{}, &LookupBudgetError{RetryAfter: wait}
	}
	asked := d.cfg.Clock()

	var a DeviceAnswer
	var err error
	if managed {
		a, err = d.lookupManaged(ctx, key.user, key.device, false)
	} else {
		a, err = d.lookup(ctx, key.user, key.device)
	}
	if err != nil {
		return DeviceAnswer{}, err
	}
	d.owned.put(key, a, asked, d.ttl(a.Verdict == DeviceOwned))
	return a, nil
}

// ttl is how long an answer is reused: a granting one for PositiveTTL, any other for NegativeTTL.
func (d *Directory) ttl(grants bool) time.Duration {
	if grants {
		return d.cfg.PositiveTTL
	}
	return d.cfg.NegativeTTL
}

// lookup is Verdict's question: the Entra device with deviceId device first,
// and only if there is none, the Intune managed device with that ID.
func (d *Directory) lookup(ctx context.Context, user, device string) (DeviceAnswer, error) {
	owners, found, err := d.registeredOwners(ctx, device)
	if err != nil {
		return DeviceAnswer{}, err
	}
	if found {
		if !owners[user] {
			return DeviceAnswer{}, nil
		}
		a, err := d.enabled(ctx, device, false)
		if err != nil || a.Verdict != DeviceOwned {
			return a, err
		}
		a.Verdict, err = d.managedBehind(ctx, device)
		return a, err
	}
	return d.lookupManaged(ctx, user, device, true)
}

// managedBehind is the verdict on an owned, enabled Entra device that Intune may manage: DeviceRetiring if a
// managed device with that azureADDeviceId is being retired, wiped or deleted, else DeviceOwned (also when Intune
// manages none: a device only registered or joined in Entra, or a tenant without Intune). Intune's list silently ignores a filter it does not
// support and answers every device, so each answer's azureADDeviceId is compared here too, and a list longer than
// maxGraphPages is ErrUnavailable rather than a guess.
func (d *Directory) managedBehind(ctx context.Context, device string) (DeviceVerdict, error) {
	verdict, served := DeviceOwned, false
	var verr error
	found, err := listPages(ctx, d, "managedDevices", d.graphURL("v1.0/deviceManagement/managedDevices?$filter="+
		url.PathEscape("azureADDeviceId eq '"+device+"'")+"&$select=id,azureADDeviceId,managementState"), nil,
		func(items []struct {
			AzureADDeviceID string  `json:"azureADDeviceId"`
			ManagementState *string `json:"managementState"`
		}) bool {
			served = true
			for _, md := range items {
				if normGUID(md.AzureADDeviceID) != device {
					continue
				}
				if verdict, verr = managementVerdict(md.ManagementState); verdict != DeviceOwned {
					return true
				}
			}
			return false
		})
	switch {
	case !served && errors.Is(err, errNoIntune):
		// Nothing in a tenant without Intune is an Intune managed device, so nothing is being retired: the
		// Entra device's own answer stands. Once a page has been served, Intune is there.
		return DeviceOwned, nil
	case err != nil:
		return DeviceNotOwned, err
	case !found:
		return DeviceNotOwned, fmt.Errorf("%w: Graph managedDevices list not found", ErrUnavailable)
	case verdict != DeviceOwned:
		return verdict, verr
	}
	return DeviceOwned, nil
}

// lookupManaged is VerdictManaged's question: does user own the Intune managed
// device with ID device. entraAbsent says the caller has just seen that no
// Entra device has deviceId device (a managed device naming its own ID as
// azureADDeviceId then has no Entra device to ask about).
func (d *Directory) lookupManaged(ctx context.Context, user, device string, entraAbsent bool) (DeviceAnswer, error) {
	var md struct {
		ID              string  `json:"id"`
		UserID          string  `json:"userId"`
		AzureADDeviceID string  `json:"azureADDeviceId"`
		ManagementState *string `json:"managementState"`
	}
	found, err := d.getJSON(ctx, d.graphURL("v1.0/deviceManagement/managedDevices/"+device+
		"?$select=id,userId,azureADDeviceId,managementState"), &md)
	if errors.Is(err, errNoIntune) {
		return DeviceAnswer{}, nil // as a 404: a tenant without Intune has no managed device of any ID
	}
	if err != nil || !found {
		return DeviceAnswer{}, err
	}
	aad := normGUID(md.AzureADDeviceID)
	hasAAD := isGUID(aad) && aad != nilGUID && !(entraAbsent && aad == device)
	if isGUID(md.UserID) && normGUID(md.UserID) == user {
		if v, err := managementVerdict(md.ManagementState); v != DeviceOwned {
			return DeviceAnswer{Verdict: v}, err
		}
		if !hasAAD {
			return DeviceAnswer{Verdict: DeviceOwned}, nil
		}
		// The primary user owns it unless the Entra device behind it is
		// disabled; a managed device whose Entra device is gone stays owned.
		return d.enabled(ctx, aad, true)
	}
	if !hasAAD {
		return DeviceAnswer{}, nil
	}
	owners, found, err := d.registeredOwners(ctx, aad)
	if err != nil || !found || !owners[user] {
		return DeviceAnswer{}, err
	}
	if v, err := managementVerdict(md.ManagementState); v != DeviceOwned {
		return DeviceAnswer{Verdict: v}, err
	}
	return d.enabled(ctx, aad, false)
}

// managementVerdict is what the managementState of a managed device the user owns says: DeviceRetiring for one
// Intune is retiring, wiping or deleting, else DeviceOwned. An answer without the state is ErrUnavailable, as one
// without accountEnabled is: never guess "managed". Only owners are told, so it is read only once ownership is known.
func managementVerdict(state *string) (DeviceVerdict, error) {
	switch {
	case state == nil:
		return DeviceNotOwned, fmt.Errorf("%w: Graph managedDevice answer has no managementState", ErrUnavailable)
	case slices.Contains(retiringStates, *state):
		return DeviceRetiring, nil
	}
	return DeviceOwned, nil
}

// enabled reads accountEnabled of the Entra device with the given deviceId
// (alternate key), once the user is known to own it: DeviceOwned if true,
// DeviceDisabled if false, with the device's object ID. A missing device (404)
// is DeviceOwned without one when missingOK (a managed device without an Entra
// device), otherwise DeviceNotOwned (deleted since its owners were read). An
// answer without a boolean accountEnabled is ErrUnavailable: never guess
// "enabled"; nor one without a GUID id, which a certificate issued on it would
// need to be revoked when the device is deleted.
func (d *Directory) enabled(ctx context.Context, deviceID string, missingOK bool) (DeviceAnswer, error) {
	var dev struct {
		ID             any   `json:"id"`
		AccountEnabled *bool `json:"accountEnabled"`
	}
	found, err := d.getJSON(ctx, d.graphURL("v1.0/devices(deviceId='"+deviceID+"')?$select=id,accountEnabled"), &dev)
	switch {
	case err != nil:
		return DeviceAnswer{}, err
	case !found && missingOK:
		return DeviceAnswer{Verdict: DeviceOwned}, nil
	case !found:
		return DeviceAnswer{}, nil
	case dev.AccountEnabled == nil:
		return DeviceAnswer{}, fmt.Errorf("%w: Graph device answer has no accountEnabled", ErrUnavailable)
	}
	id, ok := dev.ID.(string)
	if !ok || !isGUID(id) {
		return DeviceAnswer{}, fmt.Errorf("%w: Graph device answer has no object ID", ErrUnavailable)
	}
	a := DeviceAnswer{Verdict: DeviceOwned, ObjectID: normGUID(id)}
	if !*dev.AccountEnabled {
		a.Verdict = DeviceDisabled
	}
	return a, nil
}

// registeredOwners lists the registered owners of the Entra device with the
// given deviceId (alternate key), following paging. found is false on 404.
func (d *Directory) registeredOwners(ctx context.Context, deviceID string) (map[string]bool, bool, error) {
	owners := make(map[string]bool)
	found, err := listPages(ctx, d, "registeredOwners",
		d.graphURL("v1.0/devices(deviceId='"+deviceID+"')/registeredOwners?$select=id"), nil,
		func(items []struct {
			ID string `json:"id"`
		}) bool {
			for _, o := range items {
				if isGUID(o.ID) {
					owners[normGUID(o.ID)] = true
				}
			}
			return false
		})
	if err != nil || !found {
		return nil, false, err
	}
	return owners, true, nil
}

// listPages reads the Graph list at first page by page, following its nextLink (on Graph's own origin only) up to
// maxGraphPages, and hands each page's items to add, until add says it has seen enough.
// found is false when the first page is not found (the listed object is gone); a later page not found, or a list
// longer than maxGraphPages, is ErrUnavailable (what, the list's name, is for the message). Errors of a page come
// back as they are.
func listPages[T any](ctx context.Context, d *Directory, what, first string, hdr http.Header,
	add func(items []T) (stop bool)) (found bool, err error) {
	next := first
	for page := 0; next != ""; page++ {
		if page == maxGraphPages {
			return false, fmt.Errorf("%w: Graph %s: more than %d pages", ErrUnavailable, what, maxGraphPages)
		}
		var resp struct {
			Value    []T    `json:"value"`
			NextLink string `json:"@odata.nextLink"`
		}
		found, err := d.getJSONWith(ctx, next, hdr, &resp)
		if err != nil {
			return false, err
		}
		if !found {
			if page > 0 {
				return false, fmt.Errorf("%w: Graph %s: next page not found", ErrUnavailable, what)
			}
			return false, nil
		}
		if add(resp.Value) {
			return true, nil
		}
		if next = resp.NextLink; next != "" {
			if err := d.sameOrigin(next); err != nil {
				return false, err
			}
		}
	}
	return true, nil
}

func (d *Directory) graphURL(rel string) string { return d.cfg.BaseURL + rel }

// sameOrigin stops a nextLink from sending our Graph token anywhere else.
func (d *Directory) sameOrigin(link string) error {
	u, err := url.Parse(link)
	if err != nil || u.Scheme != d.base.Scheme || u.Host != d.base.Host {
		return fmt.Errorf("%w: Graph nextLink points outside %s", ErrUnavailable, d.base.Host)
	}
	return nil
}

// getJSON GETs a Graph URL. found is false for 404; every other non-200 is
// ErrUnavailable. An answer Graph's throttling guidance says to retry (429,
// 503, 504: wait Retry-After, then try again) gets one more attempt when its
// wait fits both maxGraphRetryWait and the caller's deadline, and a 401 one
// more attempt with a new token (the cached one may have been revoked). More
// would hold a caller who is better answered 503 with Retry-After at once.
func (d *Directory) getJSON(ctx context.Context, u string, v any) (found bool, err error) {
	return d.getJSONWith(ctx, u, nil, v)
}

// getJSONWith is getJSON sending the request headers hdr too.
func (d *Directory) getJSONWith(ctx context.Context, u string, hdr http.Header, v any) (found bool, err error) {
	return d.get(ctx, u, hdr, v, false)
}

// getObject is getJSON for a directory object whose absence the caller acts on (revokes for): a 404 is "not found"
// only when Graph says the object does not exist (Request_ResourceNotFound); any other 404, a route Graph does not
// serve or a proxy's page, is ErrUnavailable.
func (d *Directory) getObject(ctx context.Context, u string, v any) (found bool, err error) {
	return d.get(ctx, u, nil, v, true)
}

func (d *Directory) get(ctx context.Context, u string, hdr http.Header, v any, strict404 bool) (found bool, err error) {
	for attempt := 1; ; attempt++ {
		found, wait, err := d.getJSONOnce(ctx, u, hdr, v, strict404)
		if wait < 0 || attempt >= maxGraphAttempts {
			return found, err
		}
		if deadline, ok := ctx.Deadline(); ok && time.Until(deadline) < wait+minGraphAttemptTime {
			return found, err
		}
		if ctxtime.Sleep(ctx, wait) != nil {
			return found, err
		}
	}
}

// GraphAttempts is how many times a Graph GET that keeps being answered status is sent: twice for the answers
// Graph's throttling guidance says to retry (429, 503, 504) and for a 401 (with a new token), once for the rest.
func GraphAttempts(status int) int {
	switch status {
	case http.StatusUnauthorized, http.StatusTooManyRequests, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return maxGraphAttempts
	}
	return 1
}

// Graph retry bounds (getJSON).
const (
	maxGraphAttempts      = 2
	maxGraphRetryWait     = 2 * time.Second
	defaultGraphRetryWait = 500 * time.Millisecond
	minGraphAttemptTime   = time.Second // what the retried GET is left at least, or it is not tried
)

// graphStatus is a Graph answer's status other than 200 and 404, for the callers that tell one from another.
type graphStatus int

func (s graphStatus) Error() string { return "status " + strconv.Itoa(int(s)) }

// errNoIntune is Graph answering an Intune request that the tenant has no Intune service: it always comes wrapped
// with ErrUnavailable, so that only the callers that know what "no Intune" means for their question read it otherwise.
var errNoIntune = errors.New("entra: the tenant has no Intune (Graph: request not applicable to target tenant)")

// noIntune reports whether a 400 answer to a GET of path is Graph saying that the tenant has no Intune. Graph's
// Intune API "requires an active Intune license for the tenant" (every Intune page of the Graph reference), and in a
// tenant without one (only Entra ID) it answers each deviceManagement request 400 with the error code BadRequest and
// the message "Request not applicable to target tenant.", the answer Graph gives any feature the tenant is not
// licensed for. Only that exact answer, and only for an Intune path, counts: any other 400 is a request Graph could
// not serve, which must never pass for "no managed device".
func noIntune(path string, body []byte) bool {
	if !strings.Contains(path, "/deviceManagement/") {
		return false
	}
	code, message := graphError(body)
	return code == "BadRequest" &&
		strings.EqualFold(strings.TrimSuffix(strings.TrimSpace(message), "."), "Request not applicable to target tenant")
}

// isResourceNotFound reports whether a Graph error body says the object does not exist.
func isResourceNotFound(body []byte) bool {
	code, _ := graphError(body)
	return code == "Request_ResourceNotFound"
}

// graphError is the code and message of a Graph error body, "" when the body is not one.
func graphError(body []byte) (code, message string) {
	var e struct {
		Error struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	if json.Unmarshal(body, &e) != nil {
		return "", ""
	}
	return e.Error.Code, e.Error.Message
}

// getJSONOnce is one attempt of getJSON. wait is how long to wait before
// another attempt may help, or -1 when none would.
func (d *Directory) getJSONOnce(ctx context.Context, u string, hdr http.Header, v any, strict404 bool) (found bool, wait time.Duration, err error) {
	tok, err := d.accessToken(ctx)
	if err != nil {
		return false, -1, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return false, -1, fmt.Errorf("%w: building Graph request: %w", ErrUnavailable, err)
	}
	for k, vs := range hdr {
		req.Header[k] = vs
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Accept", "application/json")
	resp, err := d.cfg.HTTPClient.Do(req)
	if err != nil {
		return false, -1, fmt.Errorf("%w: Graph GET %s: %w", ErrUnavailable, req.URL.Path, err)
	}
	defer resp.Body.Close()
	d.noteAnswer(req.URL.Path, resp.StatusCode)
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxGraphBodyBytes+1))
	if err != nil {
		return false, -1, fmt.Errorf("%w: reading Graph response: %w", ErrUnavailable, err)
	}
	switch {
	case resp.StatusCode == http.StatusNotFound && strict404 && !isResourceNotFound(body):
		return false, -1, fmt.Errorf("%w: Graph GET %s: 404 without Request_ResourceNotFound", ErrUnavailable,
			req.URL.Path)
	case resp.StatusCode == http.StatusNotFound:
		return false, -1, nil
	case resp.StatusCode != http.StatusOK:
		wait = -1
		switch {
		case GraphAttempts(resp.StatusCode) == 1:
		case resp.StatusCode == http.StatusUnauthorized:
			d.dropToken()
			wait = 0
		default:
			wait = transport.RetryAfter(resp.Header, d.cfg.Clock())
			switch {
			case wait > 0:
			case transport.AsksRetryAfter(resp.Header):
				// Asked for, but not a wait RetryAfter honours: over an hour (which it reads as 0, for callers
				// with their own backoff), or unreadable. Not a throttle that has passed in 2 s.
				wait = -1
			default:
				wait = defaultGraphRetryWait
			}
			if wait > maxGraphRetryWait {
				wait = -1
			}
		}
		if resp.StatusCode == http.StatusBadRequest && noIntune(req.URL.Path, body) {
			// Answered, not refused: the callers read it as "no managed device", so nothing that needs the
			// permission fails now, and /api/health must not go on naming it from an earlier refusal.
			d.noteAnswer(req.URL.Path, http.StatusOK)
			return false, wait, fmt.Errorf("%w: Graph GET %s: %w: %w", ErrUnavailable, req.URL.Path,
				graphStatus(resp.StatusCode), errNoIntune)
		}
		return false, wait, fmt.Errorf("%w: Graph GET %s: %w", ErrUnavailable, req.URL.Path, graphStatus(resp.StatusCode))
	case len(body) > maxGraphBodyBytes:
		return false, -1, fmt.Errorf("%w: Graph response exceeds %d bytes", ErrUnavailable, maxGraphBodyBytes)
	}
	if err := json.Unmarshal(body, v); err != nil {
		return false, -1, fmt.Errorf("%w: decoding Graph response: %w", ErrUnavailable, err)
	}
	return true, -1, nil
}

// accessToken returns a cached Graph token, refreshing it five minutes before
// expiry (or at the credential's RefreshOn hint).
func (d *Directory) accessToken(ctx context.Context) (string, error) {
	d.tokenMu.Lock()
	defer d.tokenMu.Unlock()
	now := d.cfg.Clock()
	refreshAt := d.token.ExpiresOn.Add(-graphTokenRefreshMargin)
	if !d.token.RefreshOn.IsZero() && d.token.RefreshOn.Before(refreshAt) {
		refreshAt = d.token.RefreshOn
	}
	if d.token.Token != "" && now.Before(refreshAt) {
		return d.token.Token, nil
	}
	tok, err := d.cfg.Credential.GetToken(ctx, policy.TokenRequestOptions{Scopes: []string{d.cfg.Scope}})
	if err != nil {
		return "", fmt.Errorf("%w: acquiring Graph token: %w", ErrUnavailable, err)
	}
	if tok.Token == "" {
		return "", fmt.Errorf("%w: credential returned an empty Graph token", ErrUnavailable)
	}
	var wrong error
	if tid := tokenTenant(tok.Token); d.cfg.TenantID != "" && tid != "" && !strings.EqualFold(tid, d.cfg.TenantID) {
		wrong = fmt.Errorf("%w: the identity's Graph token is for tenant %s, the API's tenant is %s", ErrWrongTenant,
			tid, d.cfg.TenantID)
	}
	d.refusedMu.Lock()
	d.wrongTenant = wrong
	d.refusedMu.Unlock()
	if wrong != nil {
		return "", fmt.Errorf("%w: %w", ErrUnavailable, wrong)
	}
	d.token = tok
	return tok.Token, nil
}

// ErrWrongTenant reports a Graph token for another tenant than the one whose accounts are asked about: Graph would
// answer every account "not found".
var ErrWrongTenant = errors.New("entra: Graph is read in another tenant than the API's")

// tokenTenant is the tid claim of a JWT access token, read without verifying it (it comes from our own credential,
// and only decides whether to use it); "" if the token is not a readable JWT.
func tokenTenant(token string) string {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return ""
	}
	payload, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(parts[1], "="))
	if err != nil {
		return ""
	}
	var claims struct {
		TID string `json:"tid"`
	}
	if json.Unmarshal(payload, &claims) != nil {
		return ""
	}
	return claims.TID
}

func (d *Directory) dropToken() {
	d.tokenMu.Lock()
	d.token = azcore.AccessToken{}
	d.tokenMu.Unlock()
}
