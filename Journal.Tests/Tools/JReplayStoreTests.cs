using System.Buffers.Binary;
using System.Diagnostics;
using Journal.Format;
using static Journal.Tests.Snapshot.SnapTestUtil;

namespace Journal.Tests.Tools;

/// <summary>
/// jreplay on store folders: check, print and replay agree (one reader, the store's own decoders, the store's own
/// recovery), inputs that are not regular files or not whole logs are refused at once with one line, and
/// <c>zero-log</c> leaves a store whose log was destroyed openable and honest.
/// </summary>
public class JReplayStoreTests
{
    private static string Log(string store) => Path.Combine(store, "journal.log");

    private static string FullLog(string store) => Path.GetFullPath(Log(store));

    /// <summary>Runs a tool under a watchdog: an input that makes it hang fails the test instead of stalling the run.</summary>
    private static ToolResult Within(Func<ToolResult> run) => Task.Run(run).WaitAsync(TimeSpan.FromSeconds(60)).GetAwaiter().GetResult();

    [Fact]
    public async Task Check_dry_run_and_replay_agree_on_a_crashed_store_and_check_and_print_write_nothing()
    {
        using var dir = new TempFolder();
        var store = dir["store"];
        var contents = await CrashedStore.CreateAsync(store);
        var before = CrashedStore.Files(store);

        var check = ToolRunner.JReplay("check", store);
        Assert.Equal(1, check.ExitCode);
        Assert.Matches(@"^.*journal\.log: needs replay: \d+ checkpoints \(sequences \d+\.\.\d+\), \d+ item copies in \d+ records from tail \d+:\d+ to head \d+:\d+\n$", check.Stdout);
        Assert.Equal(0, ToolRunner.JReplay("print", store).ExitCode);
        var dry = ToolRunner.JReplay("replay", store, "--dry-run");
        Assert.Equal(0, dry.ExitCode);
        Assert.Equal(check.Stdout.TrimEnd('\n') + "; dry run: nothing was changed\n", dry.Stdout);
        CrashedStore.AssertSameFiles(before, CrashedStore.Files(store));

        var replay = ToolRunner.JReplay("replay", store);
        Assert.Equal(0, replay.ExitCode);
        Assert.Matches(@"replayed \d+ checkpoints from tail .* item copies applied, \d+ already home, \d+ skipped \(their snapshot is deleted, invalid or transient, or its COW file is gone\); the store was closed cleanly\n$", replay.Stdout);
        Assert.Equal(0, ToolRunner.JReplay("check", store).ExitCode);
        Assert.Equal(contents.Origin, ToolRunner.SnapCtl("read", store, "--offset", "0", "--length", "1M").Raw);
        Assert.Equal(contents.SnapshotS, ToolRunner.SnapCtl("read", store, "--snapshot", "s", "--offset", "0", "--length", "1M").Raw);
    }

    public static TheoryData<string> Inconsistencies => ["region length", "item count", "sequence"];

    [Theory]
    [MemberData(nameof(Inconsistencies))]
    public async Task A_crc_valid_but_inconsistent_checkpoint_makes_check_print_and_replay_exit_2_with_the_same_line(string what)
    {
        using var dir = new TempFolder();
        var store = dir["store"];
        await CrashedStore.CreateAsync(store);
        var cps = CrashedStore.Checkpoints(Log(store));
        var c = cps[cps.Count / 2];
        switch (what)
        {
            case "region length": CrashedStore.Forge(Log(store), c, CheckpointHeader.Size + ItemHeader.FixedSize, b => (byte)(b + 1)); break;
            case "item count": CrashedStore.Forge(Log(store), c, 16, b => (byte)(b + 1)); break;
            default:   // the sequence of the checkpoint before it
                ulong prev = cps[cps.Count / 2 - 1].Sequence;
                for (int i = 0; i < 8; i++) CrashedStore.Forge(Log(store), c, 8 + i, _ => (byte)(prev >> (8 * i)));
                break;
        }
        var before = CrashedStore.Files(store);

        string expected = $"jreplay: {FullLog(store)}: block {c.StartLsn.Block}: LSN {c.StartLsn}: checkpoint ";
        var results = new[] { ToolRunner.JReplay("check", store), ToolRunner.JReplay("print", store), ToolRunner.JReplay("replay", store, "--dry-run"), ToolRunner.JReplay("replay", store) };
        foreach (var r in results)
        {
            Assert.Equal(2, r.ExitCode);
            Assert.StartsWith(expected, Assert.Single(r.ErrorLines));
        }
        Assert.Single(results.Select(r => r.ErrorLines[0]).Distinct());
        Assert.Contains(what switch
        {
            "region length" => "region 0 length (expected ",
            "item count" => "item count disagrees with its regions (expected ",
            _ => $"sequence does not increase (expected > {cps[cps.Count / 2 - 1].Sequence}, found {cps[cps.Count / 2 - 1].Sequence})",
        }, results[0].ErrorLines[0]);
        // The failed replay changed nothing (the whole log is validated before anything is applied).
        CrashedStore.AssertSameFiles(before, CrashedStore.Files(store));
        // snapctl refuses the store with the same line.
        var status = ToolRunner.SnapCtl("status", store);
        Assert.Equal(2, status.ExitCode);
        Assert.Equal(results[0].ErrorLines[0].Replace("jreplay: ", "snapctl: "), Assert.Single(status.ErrorLines));
    }

    [Fact]
    public async Task A_crc_valid_but_inconsistent_checkpoint_in_a_bare_log_makes_check_print_and_dry_run_exit_2_with_the_same_line()
    {
        using var dir = new TempFolder();
        var log = dir["dirty.log"];
        await TestLogs.CreateAsync(log, checkpoints: 4);
        var c = CrashedStore.Checkpoints(log)[2];
        CrashedStore.Forge(log, c, 20, b => (byte)(b ^ 0x10));   // the region count
        var results = new[] { ToolRunner.JReplay("check", log), ToolRunner.JReplay("print", log), ToolRunner.JReplay("replay", log, "--dry-run") };
        foreach (var r in results)
        {
            Assert.Equal(2, r.ExitCode);
            Assert.Equal($"jreplay: {Path.GetFullPath(log)}: block {c.StartLsn.Block}: LSN {c.StartLsn}: checkpoint 3 region count disagrees with the log (expected 24, found 8)",
                Assert.Single(r.ErrorLines));
        }
    }

    private static void MakeFifo(string path)
    {
        using var p = Process.Start(new ProcessStartInfo("mkfifo", [path]) { UseShellExecute = false })!;
        p.WaitForExit();
        Assert.Equal(0, p.ExitCode);
    }

    /// <summary>
    /// A journal reached through a symbolic link is measured where the link leads (the store opens it there): every
    /// command reads the same log, and a replay finishes instead of failing after it has changed the log.
    /// </summary>
    [Fact]
    public async Task A_journal_behind_a_symbolic_link_is_read_where_the_link_leads()
    {
        using var dir = new TempFolder();
        var store = dir["store"];
        await CrashedStore.CreateAsync(store);
        string moved = dir["journal-elsewhere.log"];
        File.Move(Log(store), moved);
        File.CreateSymbolicLink(Log(store), moved);
        var check = ToolRunner.JReplay("check", store);
        Assert.True(check.ExitCode == 1, check.ToString()); // needs replay
        var print = ToolRunner.JReplay("print", store);
        Assert.True(print.ExitCode == 0, print.ToString());
        var replay = ToolRunner.JReplay("replay", store);
        Assert.True(replay.ExitCode == 0, replay.ToString());
        check = ToolRunner.JReplay("check", store);
        Assert.True(check.ExitCode == 0, check.ToString());
    }

    /// <summary>
    /// A FIFO where a COW file belongs is the store's to judge, as <c>snapctl</c>'s open judges it (its snapshot is
    /// unavailable, the file is never opened): the journal commands read the log and do not hang on it.
    /// </summary>
    [Fact]
    public async Task A_FIFO_in_place_of_a_COW_file_does_not_stop_the_journal_commands()
    {
        using var dir = new TempFolder();
        var store = dir["store"];
        await CrashedStore.CreateAsync(store, clean: true);
        MakeFifo(Path.Combine(store, "stray.cow"));
        foreach (var args in new[] { new[] { "check", store }, ["print", store], ["replay", store, "--dry-run"] })
        {
            var r = Within(() => ToolRunner.JReplay(args));
            Assert.True(r.ExitCode == 0, $"{string.Join(' ', args)}: {r}");
        }
    }

    [Theory]
    [InlineData("fifo")]
    [InlineData("directory")]
    public async Task A_journal_that_is_not_a_regular_file_is_refused_at_once_with_exit_66(string kind)
    {
        using var dir = new TempFolder();
        var store = dir["store"];
        await CrashedStore.CreateAsync(store, clean: true);
        File.Delete(Log(store));
        if (kind == "fifo") MakeFifo(Log(store)); else Directory.CreateDirectory(Log(store));
        string what = kind == "fifo" ? "a FIFO" : "a directory";
        foreach (var args in new[] { new[] { "check", store }, ["print", store], ["replay", store], ["replay", store, "--dry-run"], ["zero-log", store, "--force"] })
        {
            var r = Within(() => ToolRunner.JReplay(args));
            Assert.True(r.ExitCode == 66, $"{string.Join(' ', args)}: {r}");
            Assert.Equal([$"jreplay: {Log(store)}: is {what}, not a regular file"], r.ErrorLines);
        }
        if (kind == "fifo")
        {
            var bare = dir["bare.log"];
            MakeFifo(bare);
            var r = Within(() => ToolRunner.JReplay("check", bare));
            Assert.Equal(66, r.ExitCode);
            Assert.Equal([$"jreplay: {bare}: is a FIFO, not a regular file"], r.ErrorLines);
        }
    }

    /// <summary>
    /// snapctl checks the store's own files before the store opens them: a FIFO would block an open until a writer came
    /// (and a blocked open ignores SIGINT and SIGTERM), so each is refused at once, exit 66, one line.
    /// </summary>
    [Theory]
    [InlineData("store.sb")]
    [InlineData("journal.log")]
    [InlineData("origin.img")]
    public async Task A_store_file_that_is_a_FIFO_is_refused_by_snapctl_at_once_with_exit_66(string file)
    {
        using var dir = new TempFolder();
        var store = dir["store"];
        await CrashedStore.CreateAsync(store, clean: true);
        var path = Path.Combine(store, file);
        File.Delete(path);
        MakeFifo(path);
        foreach (var args in new[] { new[] { "status", store }, ["read", store, "--offset", "0", "--length", "4K"], ["snapshot", "create", store, "x"] })
        {
            var r = Within(() => ToolRunner.SnapCtl(args));
            Assert.True(r.ExitCode == 66, $"{string.Join(' ', args)}: {r}");
            Assert.Equal([$"snapctl: {path}: is a FIFO, not a regular file"], r.ErrorLines);
        }
    }

    [Theory]
    [InlineData(0)]
    [InlineData(512 * 1024)]
    public async Task A_truncated_journal_exits_2_naming_the_file_in_jreplay_and_snapctl(int bytes)
    {
        using var dir = new TempFolder();
        var store = dir["store"];
        await CrashedStore.CreateAsync(store);
        using (var f = new FileStream(Log(store), FileMode.Open)) f.SetLength(bytes);
        string line = $"{FullLog(store)}: journal file is too small for the store's log: it was truncated or replaced (expected at least 1048576 bytes (2048 blocks), found {bytes} bytes)";
        foreach (var args in new[] { new[] { "check", store }, ["replay", store] })
        {
            var r = ToolRunner.JReplay(args);
            Assert.Equal(2, r.ExitCode);
            Assert.Equal([$"jreplay: {line}"], r.ErrorLines);
        }
        var status = ToolRunner.SnapCtl("status", store);
        Assert.Equal(2, status.ExitCode);
        Assert.Equal([$"snapctl: {line}"], status.ErrorLines);
    }

    [Fact]
    public async Task A_journal_cut_to_half_its_size_exits_2_naming_the_file()
    {
        using var dir = new TempFolder();
        var store = dir["store"];
        await CrashedStore.CreateAsync(store);
        using (var f = new FileStream(Log(store), FileMode.Open)) f.SetLength(f.Length / 2);
        var check = ToolRunner.JReplay("check", store);
        var replay = ToolRunner.JReplay("replay", store);
        Assert.Equal(2, check.ExitCode);
        Assert.Equal(2, replay.ExitCode);
        Assert.StartsWith($"jreplay: {FullLog(store)}: ", Assert.Single(check.ErrorLines));
        Assert.Equal(check.ErrorLines, replay.ErrorLines);
    }

    [Fact]
    public async Task Print_with_an_lsn_that_names_no_record_is_a_usage_error()
    {
        using var dir = new TempFolder();
        var log = dir["dirty.log"];
        await TestLogs.CreateAsync(log, checkpoints: 3);
        var missing = ToolRunner.JReplay("print", log, "--from-lsn", "99:99");
        Assert.Equal(64, missing.ExitCode);
        Assert.Equal("", missing.Stdout);
        Assert.StartsWith("jreplay: --from-lsn 99:99: no record of the log ", Assert.Single(missing.ErrorLines));

        var first = CrashedStore.Checkpoints(log)[0].StartLsn;
        var inside = ToolRunner.JReplay("print", log, "--to-lsn", $"{first.Cycle}:{first.Block + 1}");   // a payload block
        Assert.Equal(64, inside.ExitCode);
        Assert.StartsWith($"jreplay: --to-lsn {first.Cycle}:{first.Block + 1}: no record", Assert.Single(inside.ErrorLines));

        var last = CrashedStore.Checkpoints(log)[^1].StartLsn;
        var backwards = ToolRunner.JReplay("print", log, "--from-lsn", last.ToString(), "--to-lsn", first.ToString());
        Assert.Equal(64, backwards.ExitCode);
        Assert.Equal([$"jreplay: --from-lsn {last} is after --to-lsn {first}"], backwards.ErrorLines);

        var ok = ToolRunner.JReplay("print", log, "--from-lsn", first.ToString(), "--to-lsn", first.ToString());
        Assert.Equal(0, ok.ExitCode);
        Assert.Contains($"record {first}  DATA", ok.Stdout);
    }

    [Fact]
    public async Task Zero_log_on_a_destroyed_log_warns_then_with_force_leaves_the_store_openable_and_honest()
    {
        using var dir = new TempFolder();
        var store = dir["store"];
        var contents = await CrashedStore.CreateAsync(store);
        var noise = new byte[new FileInfo(Log(store)).Length];
        new Random(11).NextBytes(noise);
        File.WriteAllBytes(Log(store), noise);
        Assert.Equal(2, ToolRunner.JReplay("check", store).ExitCode);
        Assert.Equal(2, ToolRunner.SnapCtl("status", store).ExitCode);
        var before = CrashedStore.Files(store);

        // Without --force: the warning, nothing changed, exit 64.
        var warn = ToolRunner.JReplay("zero-log", store);
        Assert.Equal(64, warn.ExitCode);
        Assert.StartsWith($"{Log(store)}: the journal is unreadable (", warn.Stdout);
        Assert.Contains("snapshot 's' is marked invalid: its exceptions may have been only in the unreadable journal", warn.Stdout);
        Assert.Equal([$"jreplay: {store}: nothing was changed: zero-log discards the journal; run it again with --force to do so"], warn.ErrorLines);
        CrashedStore.AssertSameFiles(before, CrashedStore.Files(store));

        // With --force: the store opens, the origin is intact, the snapshot says why it is invalid.
        var done = ToolRunner.JReplay("zero-log", store, "--force");
        Assert.Equal(0, done.ExitCode);
        Assert.EndsWith("journal reset: it starts again at cycle 2 (2048 blocks); 1 snapshot marked invalid\n", done.Stdout);
        Assert.Equal(0, ToolRunner.JReplay("check", store).ExitCode);
        var status = ToolRunner.SnapCtl("status", store);
        Assert.Equal(0, status.ExitCode);
        Assert.Equal("origin: 0 2048 snapshot-origin\ns: 0 2048 snapshot Invalid (the journal was reset (jreplay zero-log): exceptions not yet written home were lost)\n", status.Stdout);
        Assert.Equal(contents.Origin, ToolRunner.SnapCtl("read", store, "--offset", "0", "--length", "1M").Raw);
        var read = ToolRunner.SnapCtl("read", store, "--snapshot", "s", "--offset", "0", "--length", "4K");
        Assert.Equal(2, read.ExitCode);
        // The store works on: the invalid snapshot can be deleted, a new one taken and used.
        Assert.Equal(0, ToolRunner.SnapCtl("snapshot", "delete", store, "s").ExitCode);
        Assert.Equal(0, ToolRunner.SnapCtl("snapshot", "create", store, "n").ExitCode);
        Assert.Equal(0, ToolRunner.SnapCtl("write", store, "--offset", "0", "--pattern", "9", "--length", "8K").ExitCode);
        Assert.Equal(contents.Origin.AsSpan(0, 8192).ToArray(), ToolRunner.SnapCtl("read", store, "--snapshot", "n", "--offset", "0", "--length", "8K").Raw);
    }

    [Fact]
    public async Task Zero_log_on_a_clean_log_changes_nothing_but_the_log_and_later_crashes_still_recover()
    {
        using var dir = new TempFolder();
        var store = dir["store"];
        var contents = await CrashedStore.CreateAsync(store, clean: true);
        string statusBefore = ToolRunner.SnapCtl("status", store).Stdout;
        var before = CrashedStore.Files(store);

        var done = ToolRunner.JReplay("zero-log", store, "--force");
        Assert.Equal(0, done.ExitCode);
        Assert.StartsWith($"{Log(store)}: the journal is readable (clean); everything in it is discarded\n{store}: no snapshot loses anything", done.Stdout);
        var after = CrashedStore.Files(store);
        foreach (var (name, bytes) in before.Where(kv => kv.Key != "journal.log"))
            Assert.True(bytes.AsSpan().SequenceEqual(after[name]), $"{name} changed");
        Assert.False(before["journal.log"].AsSpan().SequenceEqual(after["journal.log"]));
        Assert.Equal(statusBefore, ToolRunner.SnapCtl("status", store).Stdout);

        // The new log starts above every LSN the homes carry: exceptions committed after the reset and only in the
        // log when the process stops are replayed, not skipped as already home.
        string crashed = dir["crashed"];
        var live = await global::Snapshot.SnapshotStore.OpenAsync(store);
        var s = live.GetSnapshot("s");
        for (int c = 50; c < 60; c++) await live.Origin.WriteAsync(c * 8L, Pattern(c * 8L, 8, 7));
        CrashedStore.CopyFolder(store, crashed);
        await live.CloseAsync();
        Assert.Equal(1, ToolRunner.JReplay("check", crashed).ExitCode);
        Assert.Equal(0, ToolRunner.JReplay("replay", crashed).ExitCode);
        Assert.Equal(contents.SnapshotS, ToolRunner.SnapCtl("read", crashed, "--snapshot", "s", "--offset", "0", "--length", "1M").Raw);
        _ = s;
    }

    [Fact]
    public async Task Zero_log_on_a_readable_log_that_needs_replay_says_replay_would_lose_nothing_and_marks_only_snapshots_with_metadata_not_home()
    {
        using var dir = new TempFolder();
        var store = dir["store"];
        var contents = await CrashedStore.CreateAsync(store);
        var warn = ToolRunner.JReplay("zero-log", store);
        Assert.Equal(64, warn.ExitCode);
        Assert.Contains($"the journal is readable: 'jreplay replay {store}' replays it without losing anything", warn.Stdout);
        var done = ToolRunner.JReplay("zero-log", store, "--force");
        Assert.Equal(0, done.ExitCode);
        Assert.Matches(@"snapshot 's' is marked invalid: metadata segment \d+ in the journal \(checkpoint \d+\) is not yet written home", done.Stdout);
        Assert.Equal("origin: 0 2048 snapshot-origin\ns: 0 2048 snapshot Invalid (the journal was reset (jreplay zero-log): exceptions not yet written home were lost)\n",
            ToolRunner.SnapCtl("status", store).Stdout);
        Assert.Equal(contents.Origin, ToolRunner.SnapCtl("read", store, "--offset", "0", "--length", "1M").Raw);
    }

    [Fact]
    public async Task Zero_log_recreates_a_missing_journal()
    {
        using var dir = new TempFolder();
        var store = dir["store"];
        var contents = await CrashedStore.CreateAsync(store, clean: true);
        File.Delete(Log(store));
        Assert.Equal(66, ToolRunner.JReplay("check", store).ExitCode);
        var done = ToolRunner.JReplay("zero-log", store, "--force");
        Assert.Equal(0, done.ExitCode);
        Assert.StartsWith($"{Log(store)}: the journal is unreadable ({Log(store)}: missing)", done.Stdout);
        Assert.Equal(4096, new FileInfo(Log(store)).Length / 512);   // 2 MiB: the size init gives a 1 MiB origin
        Assert.Equal(0, ToolRunner.JReplay("check", store).ExitCode);
        Assert.Equal(contents.Origin, ToolRunner.SnapCtl("read", store, "--offset", "0", "--length", "1M").Raw);
        Assert.Contains("s: 0 2048 snapshot Invalid (the journal was reset", ToolRunner.SnapCtl("status", store).Stdout);
    }
}
