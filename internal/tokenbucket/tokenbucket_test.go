package tokenbucket

import (
	"testing"
	"time"
)

func TestBurstThenRefill(t *testing.T) {
	now := time.Unix(1000, 0)
	b := New(3, 3*time.Second, func() time.Time { return now })
	for i := range 3 {
		if _, ok := b.Take(); !ok {
			t.Fatalf("take %d of a full bucket of 3 refused", i+1)
		}
	}
	retry, ok := b.Take()
	if ok || retry != time.Second {
		t.Fatalf("fourth take = %v, %v; want refused, retry 1s", retry, ok)
	}
	now = now.Add(500 * time.Millisecond)
	if retry, ok := b.Take(); ok || retry != 500*time.Millisecond {
		t.Fatalf("half a refill later = %v, %v; want refused, retry 500ms", retry, ok)
	}
	now = now.Add(500 * time.Millisecond)
	if _, ok := b.Take(); !ok {
		t.Fatal("a refilled token was refused")
	}
	now = now.Add(time.Hour)
	for i := range 3 {
		if _, ok := b.Take(); !ok {
			t.Fatalf("take %d after an idle hour refused", i+1)
		}
	}
	if _, ok := b.Take(); ok {
		t.Fatal("an idle hour filled the bucket past its size")
	}
}
