using Journal.Tests.Tools;

namespace Journal.Tests.Campaign;

/// <summary>
/// Issue 9 item 10: SIGINT and SIGTERM end the current operation cleanly: the request finished or abandoned, the store
/// closed (log clean, so no replay is ever needed after a Ctrl-C), exit 130 or 143 with one line. Real <c>snapctl</c>
/// processes, signalled in the middle of their work (they hold the store open and have copied and committed chunks).
/// </summary>
public sealed class SignalTests
{
    private const uint Tag = 0x5161;

    public static TheoryData<int, int> Signals => new() { { ToolProcess.SigInt, 130 }, { ToolProcess.SigTerm, 143 } };

    [Theory]
    [MemberData(nameof(Signals))]
    public async Task A_signal_during_a_long_write_ends_it_cleanly(int signal, int exitCode)
    {
        for (int megabytes = 16; ; megabytes *= 2)
        {
            using var dir = new TempFolder();
            var (store, sectors) = await StoreWithSnapshotAsync(dir, megabytes);

            string input = Tool.StampFile(dir.Path, Tag, 2, 0, sectors);
            using var p = ToolProcess.Start("snapctl", Tool.WriteArgs(store, null, 0, input));
            if (!await SignalMidWorkAsync(p, store, signal))
            {
                Assert.True(megabytes < 128, "the write always finished (exit 0, nothing on stderr) although it was signalled mid-write at 16M, 32M, 64M and 128M: too quick to catch, or the signal is ignored");
                continue;
            }
            var problems = OutcomeProblems(p, signal, exitCode);
            problems.AddRange(await CleanLogProblemsAsync(store));

            // Whatever the write did, the snapshot holds write 1, and each origin sector write 1 or write 2.
            var image = await StoreImage.ReadAsync(store);
            var origin = new VolumeModel(sectors, 1);
            origin.MayHold(2, 0, sectors);
            image.Check("origin", origin, Tag, problems);
            image.Check("s1", new VolumeModel(sectors, 1), Tag, problems);
            Assert.True(problems.Count == 0, string.Join("\n", problems));
            return;
        }
    }

    [Theory]
    [MemberData(nameof(Signals))]
    public async Task A_signal_during_a_merge_ends_it_cleanly(int signal, int exitCode)
    {
        for (int megabytes = 16; ; megabytes *= 2)
        {
            using var dir = new TempFolder();
            var (store, sectors) = await StoreWithSnapshotAsync(dir, megabytes);
            await Tool.SnapCtlOk(Tool.WriteArgs(store, null, 0, Tool.StampFile(dir.Path, Tag, 2, 0, sectors)));
            // s2 shares the origin's write 2: the merge copies every chunk into it before changing the origin.
            await Tool.SnapCtlOk("snapshot", "create", store, "s2");

            using var p = ToolProcess.Start("snapctl", ["snapshot", "merge", store, "s1"]);
            if (!await SignalMidWorkAsync(p, store, signal))
            {
                Assert.True(megabytes < 128, "the merge always finished (exit 0, nothing on stderr) although it was signalled mid-merge at 16M, 32M, 64M and 128M: too quick to catch, or the signal is ignored");
                continue;
            }
            var problems = OutcomeProblems(p, signal, exitCode);
            problems.AddRange(await CleanLogProblemsAsync(store));

            // Not started: the origin is write 2; unfinished or finished: the origin reads as s1 (write 1). Never a mix.
            var image = await StoreImage.ReadAsync(store);
            var s1 = image.Snapshot("s1");
            long expectedOrigin = s1 is { Merging: false } ? 2 : 1;
            image.Check("origin", new VolumeModel(sectors, expectedOrigin), Tag, problems);
            image.Check("s2", new VolumeModel(sectors, 2), Tag, problems);
            if (s1 is { IsValid: false } || s1?.MergeFailure is not null) problems.Add($"s1 after the signal: {s1}");
            Assert.True(problems.Count == 0, $"s1 after the signal: {(s1 is null ? "gone (merge finished)" : $"{s1.Status}, {s1.DmStatus}")}\n" + string.Join("\n", problems));
            return;
        }
    }

    /// <summary>A store of <paramref name="megabytes"/> MiB whose origin holds write 1, and snapshot s1 of it.</summary>
    private static async Task<(string Store, int Sectors)> StoreWithSnapshotAsync(TempFolder dir, int megabytes)
    {
        string store = dir["store"];
        int sectors = megabytes << 11;
        await Tool.SnapCtlOk("init", store, "--origin-size", $"{megabytes}M", "--chunk-size", "4K");
        await Tool.SnapCtlOk(Tool.WriteArgs(store, null, 0, Tool.StampFile(dir.Path, Tag, 1, 0, sectors)));
        await Tool.SnapCtlOk("snapshot", "create", store, "s1");
        return (store, sectors);
    }

    /// <summary>
    /// Sends <paramref name="signal"/> once the tool holds the store open and is well into its work
    /// (<see cref="ProcWatch.MidWorkBytes"/> written), then waits for it to exit. False when it finished first (the caller tries a larger store).
    /// </summary>
    private static async Task<bool> SignalMidWorkAsync(ToolProcess p, string store, int signal)
    {
        string journal = Path.Combine(store, "journal.log");
        // Well into the work: chunks copied and committed through the journal, so the store is dirty until closed.
        bool reached = await ProcWatch.WaitUntilAsync(p,
            () => ProcWatch.HasOpen(p.Pid, journal) && ProcWatch.BytesWritten(p.Pid) > ProcWatch.MidWorkBytes,
            Tool.Watchdog, "store open and 8 MiB written");
        if (reached)
        {
            try { p.Signal(signal); }
            catch (InvalidOperationException) when (p.HasExited) { reached = false; }
        }
        await p.WaitForExitAsync(Tool.Watchdog);
        return reached && !(p.ExitCode == 0 && p.Stderr.Length == 0);
    }

    /// <summary>Exit 130/143 and one line in all (on stderr).</summary>
    private static List<string> OutcomeProblems(ToolProcess p, int signal, int exitCode)
    {
        var problems = new List<string>();
        var lines = (p.Stdout + p.Stderr).Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        if (p.ExitCode != exitCode) problems.Add($"signal {signal}: expected exit {exitCode}, got {p.ExitCode}");
        if (lines.Length != 1) problems.Add($"signal {signal}: expected one line of output, got {lines.Length}");
        if (problems.Count > 0) problems.Add($"  stdout:\n{p.Stdout}  stderr:\n{p.Stderr}");
        return problems;
    }

    /// <summary>The store was closed: <c>jreplay check</c> finds a clean log (exit 0), nothing to replay.</summary>
    private static async Task<List<string>> CleanLogProblemsAsync(string store)
    {
        var check = await Tool.JReplay("check", store);
        return check.ExitCode == 0 ? [] : [$"jreplay check after the signal: expected 0 (clean, no replay needed): {check}"];
    }
}
