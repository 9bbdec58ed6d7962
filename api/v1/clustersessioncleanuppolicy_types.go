package v1

import (
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Annotations of the cleanup policy API.
const (
	// DefaultPolicyAnnotation, set to "true" on a ClusterSessionCleanupPolicy,
	// makes it govern the stores no other policy selects.
	DefaultPolicyAnnotation = "sessionstore.dev/is-default-policy"
	// RunNowAnnotation on a SessionStore asks for one cleanup run now; any
	// new value is a new request (as Flux's reconcile.fluxcd.io/requestedAt).
	RunNowAnnotation = "sessionstore.dev/run-now"
)

// CleanupWindowKind says whether a window allows or denies runs.
// +kubebuilder:validation:Enum=Allow;Deny
type CleanupWindowKind string

const (
	WindowAllow CleanupWindowKind = "Allow"
	WindowDeny  CleanupWindowKind = "Deny"
)

// ClusterSessionCleanupPolicySpec schedules the cleanups of the stores it
// selects across the cluster: defaults, windows and limits per database server.
type ClusterSessionCleanupPolicySpec struct {
	// Priority: of the policies that select a store, the highest applies;
	// ties go to the policy whose name sorts first.
	// +optional
	Priority int32 `json:"priority,omitempty"`
	// Selector says which stores the policy governs; empty selects every store.
	// +optional
	Selector CleanupPolicySelector `json:"selector,omitempty"`
	// Suspend pauses every run the policy governs; running ones finish.
	// +optional
	Suspend bool `json:"suspend,omitempty"`
	// TimeZone of the windows, and of the schedules of stores that set
	// none, an IANA name such as Europe/Paris. UTC when empty.
	// +optional
	// +kubebuilder:validation:MaxLength=64
	// +kubebuilder:validation:XValidation:rule="timestamp('2000-01-01T00:00:00Z').getHours(self) >= 0",message="spec.timeZone must be an IANA time zone name such as Europe/Paris"
	TimeZone *string `json:"timeZone,omitempty"`
	// Defaults apply where a store's own spec.cleanup leaves the field unset.
	// +optional
	Defaults CleanupPolicyDefaults `json:"defaults,omitempty"`
	// Windows: with none, runs are always allowed; with allow windows, only
	// while one is open. A deny window beats any allow window.
	// +optional
	// +kubebuilder:validation:MaxItems=32
	// +listType=atomic
	Windows []CleanupWindow `json:"windows,omitempty"`
	// Concurrency limits the runs started at once.
	// +optional
	Concurrency CleanupConcurrency `json:"concurrency,omitempty"`
	// StartingDeadlineSeconds: a run that could not start within this many
	// seconds of its scheduled time is deleted and recorded as skipped.
	// +optional
	// +kubebuilder:default=600
	// +kubebuilder:validation:Minimum=1
	StartingDeadlineSeconds int64 `json:"startingDeadlineSeconds,omitempty"`
}

// CleanupPolicySelector selects stores; the fields set are ANDed.
type CleanupPolicySelector struct {
	// NamespaceSelector selects stores by their namespace's labels.
	// +optional
	NamespaceSelector *metav1.LabelSelector `json:"namespaceSelector,omitempty"`
	// StoreSelector selects stores by their own labels.
	// +optional
	StoreSelector *metav1.LabelSelector `json:"storeSelector,omitempty"`
	// Backends selects stores of these backends.
	// +optional
	// +listType=set
	Backends []Backend `json:"backends,omitempty"`
}

// CleanupPolicyDefaults are what a governed store's cleanup takes where its
// own spec.cleanup says nothing.
type CleanupPolicyDefaults struct {
	// Schedule in 5-field cron syntax, where H in the minute or the hour
	// field is a value hashed from the store (each field on its own), and
	// inside an allow window when the policy has one. "H * * * *" when empty.
	// +optional
	// +kubebuilder:validation:MaxLength=100
	// +kubebuilder:validation:XValidation:rule="self.matches('^ *([*]|H|[0-5]?[0-9](-[0-5]?[0-9])?)(/[0-9]{1,2})?(,([*]|[0-5]?[0-9](-[0-5]?[0-9])?)(/[0-9]{1,2})?)* +([*]|H|([01]?[0-9]|2[0-3])(-([01]?[0-9]|2[0-3]))?)(/[0-9]{1,2})?(,([*]|([01]?[0-9]|2[0-3])(-([01]?[0-9]|2[0-3]))?)(/[0-9]{1,2})?)* +([?*]|(0?[1-9]|[12][0-9]|3[01])(-(0?[1-9]|[12][0-9]|3[01]))?)(/[0-9]{1,2})?(,((0?[1-9]|[12][0-9]|3[01])(-(0?[1-9]|[12][0-9]|3[01]))?)(/[0-9]{1,2})?)* +([*]|(0?[1-9]|1[0-2]|(?i:jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec))(-(0?[1-9]|1[0-2]))?)(/[0-9]{1,2})?(,((0?[1-9]|1[0-2]|(?i:jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec))(-(0?[1-9]|1[0-2]))?)(/[0-9]{1,2})?)* +([?*]|([0-6]|(?i:sun|mon|tue|wed|thu|fri|sat))(-([0-6]|(?i:sun|mon|tue|wed|thu|fri|sat)))?)(/[0-9]{1,2})?(,(([0-6]|(?i:sun|mon|tue|wed|thu|fri|sat))(-([0-6]|(?i:sun|mon|tue|wed|thu|fri|sat)))?)(/[0-9]{1,2})?)* *$')",message="spec.defaults.schedule must be a 5-field cron expression (minute hour day-of-month month day-of-week), H allowed in the minute and hour fields"
	Schedule string `json:"schedule,omitempty"`
	// ActiveDeadlineSeconds bounds one run, for stores that keep the
	// SessionStore default (3600).
	// +optional
	// +kubebuilder:validation:Minimum=60
	ActiveDeadlineSeconds *int64 `json:"activeDeadlineSeconds,omitempty"`
	// Resources of the cleanup container, for stores that set none.
	// +optional
	Resources *corev1.ResourceRequirements `json:"resources,omitempty"`
}

// CleanupWindow is a recurring period, as Argo CD's sync windows: it opens
// at each time of Schedule (in the policy's time zone) for Duration.
type CleanupWindow struct {
	// Kind is Allow or Deny.
	// +required
	Kind CleanupWindowKind `json:"kind"`
	// Schedule is when the window opens, in 5-field cron syntax or @daily-style.
	// +required
	// +kubebuilder:validation:MaxLength=100
	// +kubebuilder:validation:XValidation:rule="self.matches('^@(yearly|annually|monthly|weekly|daily|midnight|hourly)$') || self.matches('^ *([*]|[0-5]?[0-9](-[0-5]?[0-9])?)(/[0-9]{1,2})?(,([*]|[0-5]?[0-9](-[0-5]?[0-9])?)(/[0-9]{1,2})?)* +([*]|([01]?[0-9]|2[0-3])(-([01]?[0-9]|2[0-3]))?)(/[0-9]{1,2})?(,([*]|([01]?[0-9]|2[0-3])(-([01]?[0-9]|2[0-3]))?)(/[0-9]{1,2})?)* +([?]|([*]|(0?[1-9]|[12][0-9]|3[01])(-(0?[1-9]|[12][0-9]|3[01]))?)(/[0-9]{1,2})?)(,([?]|([*]|(0?[1-9]|[12][0-9]|3[01])(-(0?[1-9]|[12][0-9]|3[01]))?)(/[0-9]{1,2})?))* +([*]|(0?[1-9]|1[0-2]|(?i:jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec))(-(0?[1-9]|1[0-2]|(?i:jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)))?)(/[0-9]{1,2})?(,([*]|(0?[1-9]|1[0-2]|(?i:jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec))(-(0?[1-9]|1[0-2]|(?i:jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)))?)(/[0-9]{1,2})?)* +([?]|([*]|([0-6]|(?i:sun|mon|tue|wed|thu|fri|sat))(-([0-6]|(?i:sun|mon|tue|wed|thu|fri|sat)))?)(/[0-9]{1,2})?)(,([?]|([*]|([0-6]|(?i:sun|mon|tue|wed|thu|fri|sat))(-([0-6]|(?i:sun|mon|tue|wed|thu|fri|sat)))?)(/[0-9]{1,2})?))* *$')",message="spec.windows[].schedule must be a 5-field cron expression (minute hour day-of-month month day-of-week, each in range) or one of @yearly, @annually, @monthly, @weekly, @daily, @midnight, @hourly"
	Schedule string `json:"schedule"`
	// Duration the window stays open, such as 4h or 90m.
	// +required
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern="^([0-9]+(\\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$"
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('1m')",message="spec.windows[].duration must be a duration of at least 1m, such as 4h"
	Duration metav1.Duration `json:"duration"`
}

// CleanupConcurrency limits the runs started at once.
type CleanupConcurrency struct {
	// MaxPerServer is how many runs may be started at once against one
	// database server (status.cleanup.server of the stores). Unlimited when unset.
	// +optional
	// +kubebuilder:validation:XValidation:rule="self >= 1",message="spec.concurrency.maxPerServer must be at least 1"
	MaxPerServer *int32 `json:"maxPerServer,omitempty"`
	// MaxTotal is how many runs the policy governs may be started at once.
	// Unlimited when unset.
	// +optional
	// +kubebuilder:validation:XValidation:rule="self >= 1",message="spec.concurrency.maxTotal must be at least 1"
	MaxTotal *int32 `json:"maxTotal,omitempty"`
}

// Window states, in policy and store status.
const (
	// WindowStateOpen: runs may start (no windows, or an allow window open).
	WindowStateOpen = "Open"
	// WindowStateClosed: the policy has allow windows and none is open.
	WindowStateClosed = "Closed"
	// WindowStateDenied: a deny window is open.
	WindowStateDenied = "Denied"
	// WindowStateSuspended: spec.suspend holds every run.
	WindowStateSuspended = "Suspended"
	// WindowStateInvalid: a window cannot be read; runs are held until it is fixed.
	WindowStateInvalid = "Invalid"
)

// ClusterSessionCleanupPolicyStatus is what the gate last saw: totals only,
// never the list of the stores.
type ClusterSessionCleanupPolicyStatus struct {
	// ObservedGeneration is the generation this status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
	// Conditions: WindowsValid.
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`
	// Stores is how many stores the policy governs.
	// +optional
	Stores int32 `json:"stores"`
	// Running is how many of their runs are started and unfinished.
	// +optional
	Running int32 `json:"running"`
	// Waiting is how many of their runs wait for the gate.
	// +optional
	Waiting int32 `json:"waiting"`
	// SkippedLastDay is how many of the stores had a run skipped in the last 24 hours.
	// +optional
	SkippedLastDay int32 `json:"skippedLastDay"`
	// WindowState is Open, Closed, Denied, Suspended or Invalid.
	// +optional
	WindowState string `json:"windowState,omitempty"`
	// NextWindowChange is when a window next opens or closes.
	// +optional
	NextWindowChange *metav1.Time `json:"nextWindowChange,omitempty"`
}

// ClusterSessionCleanupPolicy schedules the cleanups of many SessionStores
// across namespaces: windows, limits per database server and per policy,
// suspension, and defaults.
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:scope=Cluster,shortName=cscp
// +kubebuilder:printcolumn:name="Priority",type=integer,JSONPath=".spec.priority"
// +kubebuilder:printcolumn:name="Suspended",type=boolean,JSONPath=".spec.suspend"
// +kubebuilder:printcolumn:name="Window",type=string,JSONPath=".status.windowState"
// +kubebuilder:printcolumn:name="Stores",type=integer,JSONPath=".status.stores"
// +kubebuilder:printcolumn:name="Running",type=integer,JSONPath=".status.running"
// +kubebuilder:printcolumn:name="Waiting",type=integer,JSONPath=".status.waiting"
// +kubebuilder:printcolumn:name="Skipped 24h",type=integer,JSONPath=".status.skippedLastDay"
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=".metadata.creationTimestamp"
// +kubebuilder:validation:XValidation:rule="size(self.metadata.name) <= 63",message="metadata.name must be at most 63 characters: it is a label value on the cleanup Jobs"
type ClusterSessionCleanupPolicy struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// +optional
	Spec ClusterSessionCleanupPolicySpec `json:"spec,omitempty"`
	// +optional
	Status ClusterSessionCleanupPolicyStatus `json:"status,omitempty"`
}

// ClusterSessionCleanupPolicyList is a list of ClusterSessionCleanupPolicies.
// +kubebuilder:object:root=true
type ClusterSessionCleanupPolicyList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []ClusterSessionCleanupPolicy `json:"items"`
}

func init() {
	SchemeBuilder.Register(&ClusterSessionCleanupPolicy{}, &ClusterSessionCleanupPolicyList{})
}
