package controllers

import (
	"bytes"
	"sync"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// The operator's own managedFields entry is all that Extract needs of a
// cached Secret or CronJob's managedFields, yet at 10,000 stores these
// entries held 22 MB: one copy per object of a fieldset that is the same
// for every store of a kind but for the owner reference's key, which names
// the store's UID. The cache keeps them with that UID replaced by a
// placeholder, one shared copy per distinct fieldset, and lookupOwned puts
// the UID back (from the object's controller reference) before Extract.

// ownerUIDPlaceholder is what the owner's UID reads as in a shared fieldset.
const ownerUIDPlaceholder = "~"

// maxSharedFieldSets bounds the table of shared fieldsets; past it, new
// ones are kept per object as before. Fieldsets vary only with a store's
// backend and options, so a few dozen are expected.
const maxSharedFieldSets = 4096

var sharedFieldSets = struct {
	sync.Mutex
	byContent map[string][]byte
}{byContent: map[string][]byte{}}

// ownerKey is how an owner reference's UID appears in a fieldset's JSON:
// the list item key k:{"uid":"..."}, itself a JSON string.
func ownerKey(uid string) []byte {
	return []byte(`\"uid\":\"` + uid + `\"`)
}

// shareFieldSet replaces raw, a fieldset of obj's, by the shared copy of it
// with the controller's UID replaced by the placeholder. The shared bytes
// are never written to: copies (the cache's DeepCopy) are.
func shareFieldSet(obj metav1.Object, fields *metav1.FieldsV1) {
	controller := metav1.GetControllerOfNoCopy(obj)
	if fields == nil || controller == nil || controller.UID == "" {
		return
	}
	generic := bytes.ReplaceAll(fields.Raw, ownerKey(string(controller.UID)), ownerKey(ownerUIDPlaceholder))
	sharedFieldSets.Lock()
	defer sharedFieldSets.Unlock()
	if shared, ok := sharedFieldSets.byContent[string(generic)]; ok {
		fields.Raw = shared
		return
	}
	if len(sharedFieldSets.byContent) < maxSharedFieldSets {
		sharedFieldSets.byContent[string(generic)] = generic
		fields.Raw = generic
	}
}

// restoreOwnerUID puts the controller's UID back into obj's fieldsets, on
// a copy of them: obj is a copy from the cache, its fieldsets shared.
func restoreOwnerUID(obj metav1.Object) {
	controller := metav1.GetControllerOfNoCopy(obj)
	if controller == nil {
		return
	}
	entries := obj.GetManagedFields()
	for i := range entries {
		if f := entries[i].FieldsV1; f != nil {
			f.Raw = bytes.ReplaceAll(f.Raw, ownerKey(ownerUIDPlaceholder), ownerKey(string(controller.UID)))
		}
	}
}
