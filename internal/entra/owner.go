package entra

import (
	"context"
	"errors"
	"fmt"
)

// Ownership is what Graph says now of a user and a device a self-service certificate was issued for (DeviceOwner).
type Ownership int

const (
	// OwnershipUnknown: Graph has no such device (any more), so it says nothing of who owns it. The sweeps of
	// disabled and deleted devices deal with a device gone; an owner check must not take a 404, possibly a replica
	// that lags, for a new owner.
	OwnershipUnknown Ownership = iota
	// OwnershipOwner: the user is an owner by the rule issuance applies (Verdict, VerdictManaged).
	OwnershipOwner
	// OwnershipNotOwner: the device is there and the user is none of its owners: neither a registered owner of
	// the Entra device nor, for an Intune managed device, its primary user or a registered owner of the Entra
	// device behind it.
	OwnershipNotOwner
)

func (o Ownership) String() string {
	switch o {
	case OwnershipOwner:
		return "owner"
	case OwnershipNotOwner:
		return "not owner"
	default:
		return "unknown"
	}
}

// DeviceOwner asks Graph whether userObjectID still owns deviceID by the rule issuance applied when it certified the
// device for that user: Verdict's (managed false: the Entra device with that deviceId, or failing that the Intune
// managed device with that ID) or VerdictManaged's (managed true: the Intune managed device only). It reads the same
// routes (registeredOwners, managedDevices/{id}) and nothing more: whether the device is enabled or being retired is
// not ownership, and the device sweeps and issuance deal with it.
//
// It answers OwnershipNotOwner only when Graph served the objects that decide it and the user is not among their
// owners; a device Graph does not have is OwnershipUnknown, and any failure (401/403, 429, 5xx, an answer without the
// primary user, more owners than maxGraphPages pages) an error wrapping ErrUnavailable. Unlike Verdict it is neither
// cached nor budgeted per user: the hourly sweep re-checking certificates asks it, bounded by its own allowance.
func (d *Directory) DeviceOwner(ctx context.Context, userObjectID, deviceID string, managed bool) (Ownership, error) {
	if !isGUID(userObjectID) {
		return OwnershipUnknown, fmt.Errorf("%w: user object ID", ErrInvalidID)
	}
	if !isGUID(deviceID) {
		return OwnershipUnknown, fmt.Errorf("%w: device ID", ErrInvalidID)
	}
	user, device := normGUID(userObjectID), normGUID(deviceID)
	if !managed {
		owners, found, err := d.registeredOwners(ctx, device)
		if err != nil {
			return OwnershipUnknown, fmt.Errorf("reading the registered owners of device %s: %w", device, err)
		}
		if found {
			return ownedIf(owners[user]), nil
		}
	}
	return d.managedOwner(ctx, user, device, !managed)
}

// managedOwner is DeviceOwner for the Intune managed device with ID device: its primary user, or a registered owner
// of the Entra device behind it (azureADDeviceId). entraAbsent says no Entra device has deviceId device (a managed
// device naming its own ID as azureADDeviceId then has none), as lookupManaged reads it.
func (d *Directory) managedOwner(ctx context.Context, user, device string, entraAbsent bool) (Ownership, error) {
	var md struct {
		UserID          *string `json:"userId"`
		AzureADDeviceID string  `json:"azureADDeviceId"`
	}
	found, err := d.getJSON(ctx, d.graphURL("v1.0/deviceManagement/managedDevices/"+device+
		"?$select=id,userId,azureADDeviceId"), &md)
	switch {
	case errors.Is(err, errNoIntune):
		// A tenant without Intune has no managed device of any ID: nothing to say.
		return OwnershipUnknown, nil
	case err != nil:
		return OwnershipUnknown, fmt.Errorf("reading managed device %s: %w", device, err)
	case !found:
		return OwnershipUnknown, nil
	case md.UserID == nil:
		// Never guess "someone else": an answer without the primary user decides nothing.
		return OwnershipUnknown, fmt.Errorf("%w: Graph managedDevice answer has no userId", ErrUnavailable)
	}
	if isGUID(*md.UserID) && normGUID(*md.UserID) == user {
		return OwnershipOwner, nil
	}
	aad := normGUID(md.AzureADDeviceID)
	if !isGUID(aad) || aad == nilGUID || (entraAbsent && aad == device) {
		// Someone else's (or no one's) managed device with no Entra device to be a registered owner of.
		return OwnershipNotOwner, nil
	}
	owners, found, err := d.registeredOwners(ctx, aad)
	switch {
	case err != nil:
		return OwnershipUnknown, fmt.Errorf("reading the registered owners of device %s behind managed device %s: %w",
			aad, device, err)
	case !found:
		// The Entra device behind it is gone: the device sweep's to act on, not a change of owner.
		return OwnershipUnknown, nil
	}
	return ownedIf(owners[user]), nil
}

func ownedIf(owner bool) Ownership {
	if owner {
		return OwnershipOwner
	}
	return OwnershipNotOwner
}
