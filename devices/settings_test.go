package devices

import (
	"encoding/json"
	"testing"
)

func settingsCmd(t *testing.T, id string, a SettingsArgs) Command {
	t.Helper()
	b, err := json.Marshal(a)
	if err != nil {
		t.Fatal(err)
	}
	return Command{ID: id, Type: CmdSettings, Args: b}
}

func TestMergePatch(t *testing.T) {
	for _, c := range []struct{ doc, patch, want string }{
		{``, `{"a":1}`, `{"a":1}`},
		{`{"a":1,"b":{"c":2,"d":3}}`, `{"a":null,"b":{"c":null,"e":4}}`, `{"b":{"d":3,"e":4}}`},
		{`{"a":[1,2]}`, `{"a":[3]}`, `{"a":[3]}`},
		{`{"a":{"b":1}}`, `{"a":"x"}`, `{"a":"x"}`},
	} {
		got, err := MergePatch(json.RawMessage(c.doc), json.RawMessage(c.patch))
		if err != nil || string(got) != c.want {
			t.Errorf("MergePatch(%s, %s) = %s, %v; want %s", c.doc, c.patch, got, err, c.want)
		}
	}
}

// TestSettingsModel: the device's own settings are merged and reported whole; the profile is
// replaced and reported by version; older commands change nothing but are still reported.
func TestSettingsModel(t *testing.T) {
	m := NewSettingsModel()
	rep, err := m.Apply(settingsCmd(t, "c1", SettingsArgs{Desired: json.RawMessage(`{"alarm":"07:00","units":"metric"}`), Version: 1}))
	if err != nil || rep.Doc != DocDevice || rep.Version != 1 || string(rep.Reported) != `{"alarm":"07:00","units":"metric"}` {
		t.Fatalf("first: %+v %s %v", rep, rep.Reported, err)
	}
	rep, _ = m.Apply(settingsCmd(t, "c2", SettingsArgs{Desired: json.RawMessage(`{"alarm":null}`), Version: 2}))
	if rep.Version != 2 || string(rep.Reported) != `{"units":"metric"}` {
		t.Fatalf("patch: %+v %s", rep, rep.Reported)
	}
	rep, _ = m.Apply(settingsCmd(t, "c3", SettingsArgs{Desired: json.RawMessage(`{"alarm":"05:00"}`), Version: 1}))
	if rep.Version != 2 || string(rep.Reported) != `{"units":"metric"}` {
		t.Fatalf("an older command was applied: %+v %s", rep, rep.Reported)
	}

	rep, err = m.Apply(settingsCmd(t, "p1", SettingsArgs{Doc: DocProfile, Desired: json.RawMessage(`{"height_cm":172,"birth_year":1990}`), Version: 3}))
	if err != nil || rep.Doc != DocProfile || rep.Version != 3 || rep.Reported != nil {
		t.Fatalf("profile: %+v %v", rep, err)
	}
	if err := rep.Validate(); err != nil {
		t.Fatalf("the profile report is not valid: %v", err)
	}
	m.Apply(settingsCmd(t, "p2", SettingsArgs{Doc: DocProfile, Desired: json.RawMessage(`{"height_cm":173}`), Version: 4}))
	m.Apply(settingsCmd(t, "p0", SettingsArgs{Doc: DocProfile, Desired: json.RawMessage(`{"height_cm":150}`), Version: 2}))
	if p, v := m.Profile(); v != 4 || string(p) != `{"height_cm":173}` {
		t.Fatalf("profile %s version %d, want the whole version 4", p, v)
	}
	if s, v := m.Settings(); v != 2 || string(s) != `{"units":"metric"}` {
		t.Fatalf("the profile touched the device's settings: %s %d", s, v)
	}
	if _, err := m.Apply(Command{ID: "x", Type: CmdSettings, Args: json.RawMessage(`{"doc":"other","desired":{},"version":1}`)}); err == nil {
		t.Fatal("an unknown doc was applied")
	}
	// A field a newer hub adds does not make the device refuse its settings.
	if _, err := m.Apply(Command{ID: "y", Type: CmdSettings, Args: json.RawMessage(`{"desired":{"a":1},"version":3,"future":true}`)}); err != nil {
		t.Fatalf("unknown field: %v", err)
	}
}

func TestSettingsReportArgs(t *testing.T) {
	for _, c := range []struct {
		args  string
		field string // "" when valid
	}{
		{`{"reported":{"a":1},"version":1}`, ""},
		{`{"doc":"profile","version":1}`, ""},
		{`{"doc":"profile","reported":{"a":1},"version":1}`, "args.reported"},
		{`{"doc":"profile","version":-1}`, "args.version"},
		{`{"version":1}`, "args.reported"},
		{`{"doc":"device","reported":{},"version":1}`, "args.doc"},
	} {
		_, err := DecodeArgs[SettingsReportArgs](Request{ID: "r", Op: OpSettingsReport, Args: json.RawMessage(c.args)})
		var field string
		if err != nil {
			de, ok := err.(*DecodeError)
			if !ok {
				t.Fatalf("%s: %T %v", c.args, err, err)
			}
			field = de.Field
			if field == "" {
				field = "?"
			}
		}
		if field != c.field {
			t.Errorf("%s: error field %q (%v), want %q", c.args, field, err, c.field)
		}
	}
	// The Go encoding of a profile report leaves reported out rather than sending null.
	b, _ := json.Marshal(SettingsReportArgs{Doc: DocProfile, Version: 2})
	if string(b) != `{"doc":"profile","version":2}` {
		t.Fatalf("encoded %s", b)
	}
}

func TestPhoneAppliesSettings(t *testing.T) {
	p := NewPhoneModel()
	out := p.HandleCommand(settingsCmd(t, "p1", SettingsArgs{Doc: DocProfile, Desired: json.RawMessage(`{"goal_steps":8000}`), Version: 1}))
	if !out.Ack || out.Status != AckAcknowledged || out.Report == nil || out.Report.Doc != DocProfile || out.Report.Version != 1 {
		t.Fatalf("profile outcome %+v", out)
	}
	out = p.HandleCommand(Command{ID: "bad", Type: CmdSettings, Args: json.RawMessage(`{"desired":"x","version":1}`)})
	if !out.Ack || out.Status != AckFailed || out.Report != nil {
		t.Fatalf("bad settings outcome %+v", out)
	}
	if prof, v := p.Settings().Profile(); v != 1 || string(prof) != `{"goal_steps":8000}` {
		t.Fatalf("phone holds %s version %d", prof, v)
	}
}
