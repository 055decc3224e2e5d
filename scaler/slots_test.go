package scaler

import (
	"testing"
)

// A replica's waiting jobs go after free slots one job per slot: a slot
// being tried here, or taken, is never handed out twice.
func TestReservationsHandOutEachFreeSlotOnce(t *testing.T) {
	v := newSlotView()
	v.set("small.0", true)
	got := map[int]bool{}
	var tickets []*slotTicket
	for range 3 {
		tk, ok := v.reserve("small", 4, nil)
		if !ok {
			t.Fatalf("reserve: none free after %d, want 3 free slots", len(tickets))
		}
		if tk.n == 0 || got[tk.n] {
			t.Fatalf("reserve handed out slot %d again (taken or pending)", tk.n)
		}
		got[tk.n] = true
		tickets = append(tickets, tk)
	}
	if _, ok := v.reserve("small", 4, nil); ok {
		t.Fatal("reserve: a fourth ticket with one slot taken and three pending")
	}
	if _, ok := v.reserve("large", 4, nil); !ok {
		t.Fatal("reserve: another pool's slots are not this pool's")
	}

	// Released (lost, or not tried): free to try again.
	tickets[0].release()
	tickets[0].release() // idempotent
	tk, ok := v.reserve("small", 4, nil)
	if !ok || tk.n != tickets[0].n {
		t.Fatalf("reserve after release: %v, %v; want slot %d", tk, ok, tickets[0].n)
	}

	// Won: pending until the watch sees it taken, then taken, then free
	// once the watch sees it deleted.
	won := tickets[1]
	won.won()
	won.release() // after won: a no-op
	if _, ok := v.reserve("small", 4, nil); ok {
		t.Fatal("a won slot not yet seen by the watch was handed out")
	}
	v.set(slotKey("small", won.n), true)
	v.set(slotKey("small", won.n), false)
	if tk, ok := v.reserve("small", 4, nil); !ok || tk.n != won.n {
		t.Fatalf("reserve after the won slot was released: %v, %v; want slot %d", tk, ok, won.n)
	}
}

func TestReservationsSkipSlotsLostThisRound(t *testing.T) {
	v := newSlotView()
	skip := map[int]bool{0: true, 1: true}
	for range 10 {
		tk, ok := v.reserve("small", 3, skip)
		if !ok || tk.n != 2 {
			t.Fatalf("reserve: %v, %v; want slot 2, the one not skipped", tk, ok)
		}
		tk.release()
	}
	skip[2] = true
	if _, ok := v.reserve("small", 3, skip); ok {
		t.Fatal("reserve: every slot skipped, yet one handed out")
	}
}
