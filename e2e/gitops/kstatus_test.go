package gitops

import (
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
)

func TestKstatusReadsPlannerStatuses(t *testing.T) {
	for _, c := range loadCases(t) {
		t.Run(c.Name, func(t *testing.T) {
			// Decoded as client-go decodes objects (integers as int64), as Flux reads them.
			object := &unstructured.Unstructured{}
			if err := object.UnmarshalJSON(c.Object); err != nil {
				t.Fatal(err)
			}
			result, err := status.Compute(object)
			if err != nil {
				t.Fatalf("kstatus: %v", err)
			}
			if got := result.Status.String(); got != c.Kstatus {
				t.Errorf("kstatus says %s (%q), want %s", got, result.Message, c.Kstatus)
			}
		})
	}
}

// Without the CRD's status default an object nobody reconciled yet would count as Current, and
// a Flux Kustomization with wait: true would pass before the operator looked at it.
func TestKstatusCountsAnObjectWithoutStatusAsCurrent(t *testing.T) {
	fresh := loadCases(t)[0]
	if fresh.Name != "fresh" {
		t.Fatalf("first case is %q, want fresh", fresh.Name)
	}
	object := &unstructured.Unstructured{}
	if err := object.UnmarshalJSON(fresh.Object); err != nil {
		t.Fatal(err)
	}
	unstructured.RemoveNestedField(object.Object, "status")
	result, err := status.Compute(object)
	if err != nil {
		t.Fatalf("kstatus: %v", err)
	}
	if result.Status != status.CurrentStatus {
		t.Errorf("kstatus says %s without status; the CRD default exists because it says Current", result.Status)
	}
}
