package tables

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"
	"unicode/utf16"

	"github.com/Azure/azure-sdk-for-go/sdk/data/aztables"

	"github.com/azscep/azscep/internal/store"
)

// Service limits (azure-functions.md §4.3).
const (
	// MaxProperty is the largest binary property, and the largest string property in UTF-16 bytes.
	MaxProperty = 64 * 1024
	// MaxKey is the longest idempotency key accepted (the key is stored as a property; the row key is its hash).
	MaxKey = 2048
	// MaxMetaValue is the largest meta document: it is split over binary properties of MaxProperty bytes,
	// and the entity as a whole must stay under 1 MiB.
	MaxMetaValue = 512 * 1024
)

// timeLayout is the service's DateTime form: UTC with 100 ns resolution.
const timeLayout = "2006-01-02T15:04:05.0000000Z"

const propWriteID = "WriteID"

// minDateTime is the first instant of Edm.DateTime's documented range (Azurite stores earlier ones),
// as timeLayout renders it.
const minDateTime = "1601-01-01T00:00:00.0000000Z"

// normTime is a time as the service keeps it.
func normTime(t time.Time) time.Time {
	if t.IsZero() {
		return time.Time{}
	}
	return t.UTC().Truncate(100 * time.Nanosecond)
}

// entity is one entity being written: keys, properties and OData type annotations.
type entity map[string]any

func newEntity(pk, rk string) entity {
	return entity{"PartitionKey": pk, "RowKey": rk}
}

func (e entity) pk() string { return e["PartitionKey"].(string) }
func (e entity) rk() string { return e["RowKey"].(string) }

func (e entity) set(name string, v any) { e[name] = v }

// cleared is a string, boolean or integer property the writer left empty, holding its empty value. An insert or
// a replace omits it (it reads back as empty); a merge writes the empty value, so that a merge clears what the
// writer cleared while the properties the writer does not know (a newer version's) stay as they are.
type cleared struct{ empty any }

// str sets a string property; the empty string is cleared.
func (e entity) str(name, v string) {
	if v == "" {
		e[name] = cleared{""}
		return
	}
	e[name] = v
}

// boolean sets a boolean property; false is cleared.
func (e entity) boolean(name string, v bool) {
	if !v {
		e[name] = cleared{false}
		return
	}
	e[name] = true
}

// int sets an Edm.Int32 property; zero is cleared.
func (e entity) int(name string, v int) {
	if v == 0 {
		e[name] = cleared{int32(0)}
		return
	}
	e[name] = int32(max(min(v, math.MaxInt32), math.MinInt32))
}

// time sets an Edm.DateTime; the zero time is omitted (it is outside the service's range), so that a merge leaves
// a stored time as it is.
func (e entity) time(name string, t time.Time) {
	if t.IsZero() {
		return
	}
	e[name] = normTime(t).Format(timeLayout)
	e[name+"@odata.type"] = "Edm.DateTime"
}

// binary sets an Edm.Binary; an empty value is omitted, so that a merge leaves a stored value as it is (an empty
// Edm.Binary is not written anywhere, lest the service refuse it).
func (e entity) binary(name string, b []byte) {
	if len(b) == 0 {
		return
	}
	e[name] = base64.StdEncoding.EncodeToString(b)
	e[name+"@odata.type"] = "Edm.Binary"
}

// jsonStr stores v as a JSON string property (for lists); nil and empty lists are cleared (see str). '&', '<' and '>' are
// kept as they are: json.Marshal's HTML escapes (\u0026) make a list six times longer than its names, and the
// names policy allows (32 URIs of 512 characters) would then no longer fit in one property.
func (e entity) jsonStr(name string, v []string) {
	if len(v) == 0 {
		e[name] = cleared{""}
		return
	}
	e[name] = store.ListJSON(v)
}

// Entity limits of the service (Understanding the Table service data model). Azurite does not enforce the entity
// size or the property count: checked here so that tests against Azurite refuse what Azure would, and the caller
// gets a clear error.
const (
	// maxEntity is the largest entity, counted as Microsoft documents the estimate (4 bytes, the keys in UTF-16, and
	// per property 8 bytes, its name in UTF-16 and its value), less a margin: the service's own count differs from
	// that estimate by some tens of bytes.
	maxEntity = 1<<20 - 1024
	// maxProperties is how many properties an entity may have besides PartitionKey, RowKey and Timestamp.
	maxProperties = 252
	// maxKeyChars is the longest PartitionKey or RowKey.
	maxKeyChars = 1024
)

var (
	errTooLarge = errors.New("property over the 64 KiB limit")
	errEntity   = errors.New("entity outside the service's limits")
)

// marshal checks the service's limits on keys, properties and the entity (so the caller gets a clear error, not
// the service's 400) and encodes it for an insert or a replace: cleared properties are left out.
func (e entity) marshal() ([]byte, error) { return e.encode(false) }

// marshalMerge is marshal for a merge: cleared properties are written with their empty values.
func (e entity) marshalMerge() ([]byte, error) { return e.encode(true) }

func (e entity) encode(merge bool) ([]byte, error) {
	for _, k := range []string{"PartitionKey", "RowKey"} {
		if err := checkKeyValue(e[k]); err != nil {
			return nil, fmt.Errorf("%s: %w: %w", k, errEntity, err)
		}
	}
	size, props := 4+utf16Len(e.pk())+utf16Len(e.rk()), 0
	out := make(map[string]any, len(e))
	for name, v := range e {
		if c, ok := v.(cleared); ok {
			if !merge {
				continue
			}
			v = c.empty
		}
		out[name] = v
		if name == "PartitionKey" || name == "RowKey" || strings.HasSuffix(name, "@odata.type") {
			continue
		}
		props++
		n := 0
		switch v := v.(type) {
		case string:
			switch typ, _ := e[name+"@odata.type"].(string); typ {
			case "Edm.Binary":
				n = len(v)/4*3 - strings.Count(v[max(0, len(v)-2):], "=")
				if n > MaxProperty {
					return nil, fmt.Errorf("%s: %w", name, errTooLarge)
				}
				n += 4
			case "Edm.DateTime":
				// timeLayout renders the years 0 to 9999 in four digits, and any other year longer (five digits, or a
				// sign); of the four-digit years, those before 1601 sort below the first instant of the range.
				if len(v) != len(minDateTime) || v < minDateTime {
					return nil, fmt.Errorf("%s: %w: %s is outside Edm.DateTime (1601 to 9999)", name, errEntity, v)
				}
				n = 8
			default:
				if n = utf16Len(v); n > MaxProperty {
					return nil, fmt.Errorf("%s: %w", name, errTooLarge)
				}
				n += 4
			}
		case bool:
			n = 1
		case int32:
			n = 4
		default:
			n = 8
		}
		size += 8 + utf16Len(name) + n
	}
	if props > maxProperties {
		return nil, fmt.Errorf("%w: %d properties, at most %d", errEntity, props, maxProperties)
	}
	if size > maxEntity {
		return nil, fmt.Errorf("%w: %d bytes, at most %d", errEntity, size, maxEntity)
	}
	return json.Marshal(out)
}

// checkKeyValue applies the service's rules for PartitionKey and RowKey values: a string of at most 1,024
// characters without '/', '\', '#', '?' or control characters (U+0000 to U+001F, U+007F to U+009F).
func checkKeyValue(v any) error {
	k, ok := v.(string)
	if !ok {
		return fmt.Errorf("key is a %T, not a string", v)
	}
	if utf16Len(k)/2 > maxKeyChars {
		return fmt.Errorf("key is over %d characters", maxKeyChars)
	}
	if i := strings.IndexFunc(k, func(r rune) bool {
		return r == '/' || r == '\\' || r == '#' || r == '?' || r <= 0x1f || r >= 0x7f && r <= 0x9f
	}); i >= 0 {
		return fmt.Errorf("key %q holds a character the service does not allow", k)
	}
	return nil
}

func utf16Len(s string) int {
	n := 0
	for _, r := range s {
		n += utf16.RuneLen(r)
	}
	return 2 * n
}

// props is one entity read back.
type props map[string]any

func decodeEntity(raw []byte) (props, string, error) {
	var e aztables.EDMEntity
	if err := json.Unmarshal(raw, &e); err != nil {
		return nil, "", fmt.Errorf("decoding entity: %w", err)
	}
	p := props(e.Properties)
	p["PartitionKey"] = e.PartitionKey
	p["RowKey"] = e.RowKey
	return p, e.ETag, nil
}

func (p props) str(name string) string {
	s, _ := p[name].(string)
	return s
}

func (p props) boolean(name string) bool {
	b, _ := p[name].(bool)
	return b
}

func (p props) int(name string) int {
	switch v := p[name].(type) {
	case int32:
		return int(v)
	case aztables.EDMInt64:
		return int(v)
	case float64:
		return int(v)
	}
	return 0
}

// int32 reads an Edm.Int32 as entity.int writes it: an integral number within int32's range (also as an Edm.Int64
// or an unannotated JSON number). Anything else is an error rather than a value the writer could not have stored.
func (p props) int32(name string) (int, error) {
	var f float64
	switch v := p[name].(type) {
	case nil:
		return 0, nil
	case int32:
		return int(v), nil
	case aztables.EDMInt64:
		if v < math.MinInt32 || v > math.MaxInt32 {
			return 0, fmt.Errorf("property %s: %d is outside Edm.Int32", name, int64(v))
		}
		return int(v), nil
	case float64:
		f = v
	default:
		return 0, fmt.Errorf("property %s has type %T, want Edm.Int32", name, p[name])
	}
	if f != math.Trunc(f) || f < math.MinInt32 || f > math.MaxInt32 {
		return 0, fmt.Errorf("property %s: %v is not an Edm.Int32", name, f)
	}
	return int(f), nil
}

// time tolerates a DateTime that arrives without its annotation (as a plain string).
func (p props) time(name string) (time.Time, error) {
	switch v := p[name].(type) {
	case nil:
		return time.Time{}, nil
	case aztables.EDMDateTime:
		return normTime(time.Time(v)), nil
	case string:
		t, err := time.Parse(time.RFC3339Nano, v)
		if err != nil {
			return time.Time{}, fmt.Errorf("property %s: %w", name, err)
		}
		return normTime(t), nil
	}
	return time.Time{}, fmt.Errorf("property %s has type %T, want Edm.DateTime", name, p[name])
}

// binary tolerates a Binary that arrives without its annotation (as a base64 string).
func (p props) binary(name string) ([]byte, error) {
	switch v := p[name].(type) {
	case nil:
		return nil, nil
	case aztables.EDMBinary:
		if len(v) == 0 {
			return nil, nil
		}
		return []byte(v), nil
	case string:
		b, err := base64.StdEncoding.DecodeString(v)
		if err != nil {
			return nil, fmt.Errorf("property %s: %w", name, err)
		}
		if len(b) == 0 {
			return nil, nil
		}
		return b, nil
	}
	return nil, fmt.Errorf("property %s has type %T, want Edm.Binary", name, p[name])
}

func (p props) jsonStr(name string) ([]string, error) {
	s := p.str(name)
	if s == "" {
		return nil, nil
	}
	var v []string
	if err := json.Unmarshal([]byte(s), &v); err != nil {
		return nil, fmt.Errorf("property %s: %w", name, err)
	}
	if len(v) == 0 {
		return nil, nil
	}
	return v, nil
}

// decoder collects the first error of a series of property reads.
type decoder struct {
	p   props
	err error
}

func (d *decoder) time(name string) time.Time {
	t, err := d.p.time(name)
	if d.err == nil {
		d.err = err
	}
	return t
}

func (d *decoder) int32(name string) int {
	n, err := d.p.int32(name)
	if d.err == nil {
		d.err = err
	}
	return n
}

func (d *decoder) binary(name string) []byte {
	b, err := d.p.binary(name)
	if d.err == nil {
		d.err = err
	}
	return b
}

func (d *decoder) jsonStr(name string) []string {
	v, err := d.p.jsonStr(name)
	if d.err == nil {
		d.err = err
	}
	return v
}
