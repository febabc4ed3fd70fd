using System.Diagnostics;
using System.Globalization;
using System.Text;
using Journal.Tests.Tools;

namespace Journal.Tests.Campaign;

/// <summary>
/// The standing crash campaign: real <c>snapctl</c> and <c>jreplay</c> processes run a random workload on one small
/// store (origin writes, writes to writable snapshots, snapshot create, delete and merge), and many of them are killed
/// with SIGKILL at a random point of their work; the store is then recovered (sometimes by <c>jreplay replay</c>, itself
/// killed now and then, else by the next command's open) and every sector of the origin and of every snapshot is
/// checked against a model of what was acknowledged.
/// </summary>
/// <remarks>
/// <para><b>What is acknowledged, what may land.</b> A command that exited 0 was acknowledged: its effect must be
/// there, whole, from then on. A command killed before it exited 0 was not: it may have landed wholly, partly or not
/// at all, with these limits (the store's guarantees, docs/snapshot.md "Crash semantics" and "Merge"):</para>
/// <list type="bullet">
/// <item>a killed write: each of its sectors may hold the new data or what it held before (sector granularity; every
/// sector is stamped with the write that produced it, <see cref="SectorStamp"/>); sectors it did not touch, and every
/// snapshot when it wrote the origin, must be exactly as before (the old data is copied out before the origin
/// changes);</item>
/// <item>a killed <c>snapshot create</c>: the snapshot exists (valid, holding the origin as of that moment) or it does
/// not; a killed <c>delete</c>: it is gone, or it exists with its content intact;</item>
/// <item>a killed <c>merge</c>: not started (the origin as before, the snapshot intact), unfinished (the snapshot marked
/// merging, the origin reading as the snapshot: whole, never a mix; the next step runs the merge again) or finished (the
/// snapshot gone, the origin equal to it); other snapshots unchanged in every case;</item>
/// <item>a killed <c>jreplay replay</c> changes no content.</item>
/// </list>
/// <para>Reading the store back (<see cref="StoreImage"/>) checks every sector against its set of acceptable writes and
/// then collapses each set to what the sector holds, so the model stays exact. Reads are skipped after some steps, so the
/// next command's own open has to replay the log the kill left behind.</para>
/// <para>All random choices come from one seed (printed), each step's from its own generator seeded from (seed, step).
/// The kill points depend on timing as well: a rerun makes the same choices and kills at about the same points, and
/// where a kill lands differently (a create that lands in one run and not in the other) the runs differ in what
/// exists from there on, while the numbers drawn stay the same.</para>
/// </remarks>
public sealed class CrashCampaign
{
    private const int MaxLiveSnapshots = 4;
    private const double KillRate = 0.55;
    private const int OriginSectors = 8192; // 4 MiB

    private readonly Random _rng; // the store's geometry
    private Random _step = new(0); // this step's choices (see StepAsync)
    private readonly int _seed;
    private readonly uint _tag;
    private readonly string _store;
    private readonly string _scratch;
    private readonly string _journal;
    private readonly Action<string> _log;
    private readonly int _chunkSectors;
    private readonly string _logSize;
    private readonly Dictionary<string, double> _duration = new();
    private readonly Dictionary<long, string> _writes = new() { [0] = "write 0 (zeros of a fresh store)" };
    private readonly List<string> _history = new();
    private readonly List<string> _names = new(); // live snapshots, in creation order
    private readonly Dictionary<string, VolumeModel> _snapshots = new();
    private readonly List<(long Write, string Volume, long Sector, int Sectors)> _killedWrites = new();
    private readonly Dictionary<string, int> _counts = new();
    private VolumeModel _origin = new(OriginSectors);
    private long _nextWrite = 1;
    private int _nextSnapshot = 1;
    private int _iteration;
    private string? _pendingMerge;
    private (string Name, VolumeModel PointInTime)? _maybeCreated;
    private string? _maybeDeleted;
    private (string Name, VolumeModel OriginBefore)? _maybeMerged;

    /// <summary>Sets up a campaign in <paramref name="folder"/> (an empty scratch folder) from <paramref name="seed"/>.</summary>
    public CrashCampaign(string folder, int seed, Action<string> log)
    {
        _seed = seed;
        _rng = new Random(seed);
        _tag = (uint)_rng.Next() | 1;
        _store = Path.Combine(folder, "store");
        _scratch = folder;
        _journal = Path.Combine(_store, "journal.log");
        _log = log;
        _chunkSectors = new[] { 2, 8, 32 }[_rng.Next(3)];
        _logSize = new[] { "1M", "2M" }[_rng.Next(2)]; // 1M is the smallest log the store accepts
    }

    /// <summary>How to run this campaign again.</summary>
    public string Reproduce(int iterations) =>
        $"JOURNAL_CAMPAIGN_SEED={_seed} JOURNAL_CAMPAIGN_ITERATIONS={iterations} dotnet test Journal.sln -c Release --filter FullyQualifiedName~CrashCampaignTests";

    /// <summary>Geometry of the store, for the log.</summary>
    public string Geometry => $"origin 4M ({OriginSectors} sectors), chunk {_chunkSectors * 512 / 1024}K ({_chunkSectors} sectors), log {_logSize}";

    /// <summary>Steps run.</summary>
    public int Iterations => _iteration;

    /// <summary>
    /// Runs <paramref name="iterations"/> steps (or, with <paramref name="until"/>, steps until then), then a final full
    /// check. Throws <see cref="CampaignFailure"/> on the first loss, with the seed, the step, the sectors and the history.
    /// </summary>
    public async Task RunAsync(int iterations, DateTime? until, int reproduceIterations)
    {
        await Tool.SnapCtlOk("init", _store, "--origin-size", "4M", "--chunk-size", $"{_chunkSectors * 512}", "--log-size", _logSize);
        // Write 1 fills the origin, so every snapshot's content is stamped and a misplaced chunk shows.
        await RunWriteAsync(null, 0, OriginSectors, tryKill: false);
        while (until is { } u ? DateTime.UtcNow < u : _iteration < iterations)
        {
            _iteration++;
            await StepAsync(reproduceIterations);
        }
        // A watcher that never sees a tool hold the store would kill nothing, and the campaign would prove little.
        if (_iteration >= 5 && _counts.GetValueOrDefault("runs seen holding the store") == 0)
            Fail($"no tool run was ever seen holding {_journal} open (/proc/<pid>/fd): no kill landed in a command's work", reproduceIterations);
        await VerifyAsync("final check", reproduceIterations);
        await CrossCheckWithToolsAsync(reproduceIterations);
        _log("history:\n  " + string.Join("\n  ", _history));
    }

    /// <summary>The counts of what ran: steps, kills, replays, checks, how killed writes landed.</summary>
    public string Summary() =>
        $"crash campaign seed {_seed}: {_iteration} steps on {Geometry}; " +
        string.Join(", ", _counts.OrderBy(k => k.Key, StringComparer.Ordinal).Select(k => $"{k.Key} {k.Value}"));

    private void Count(string what) => _counts[what] = _counts.GetValueOrDefault(what) + 1;

    private async Task StepAsync(int reproduceIterations)
    {
        // Each step draws from its own generator, seeded from (seed, step): a kill that lands differently in a rerun
        // changes what exists afterwards, but not the numbers the later steps draw.
        _step = new Random(unchecked(_seed * 7919 + _iteration * 104729));
        bool look = _step.NextDouble() < 0.5;
        bool killedSomething;
        if (_pendingMerge is { } pending)
        {
            killedSomething = await RunMergeAsync(pending, _step.NextDouble() < 0.5);
        }
        else
        {
            bool tryKill = _step.NextDouble() < KillRate;
            int pick = _step.Next(100);
            killedSomething = pick switch
            {
                < 40 => await RunWriteAsync(null, -1, 0, tryKill),
                < 60 when _names.Count > 0 => await RunWriteAsync(_names[_step.Next(_names.Count)], -1, 0, tryKill),
                < 75 when _names.Count < MaxLiveSnapshots => await RunCreateAsync(tryKill),
                < 87 when _names.Count > 0 => await RunDeleteAsync(_names[_step.Next(_names.Count)], tryKill),
                < 100 when _names.Count > 0 => await RunMergeAsync(_names[_step.Next(_names.Count)], tryKill),
                _ => await RunWriteAsync(null, -1, 0, tryKill),
            };
        }
        if (killedSomething) await RecoverAsync(reproduceIterations);
        bool mustLook = _maybeCreated is not null || _maybeDeleted is not null || _maybeMerged is not null;
        if (mustLook || look) await VerifyAsync($"check after step {_iteration}", reproduceIterations);
    }

    // ---- operations ----------------------------------------------------------------------------------------------

    private async Task<bool> RunWriteAsync(string? snapshot, long sector, int sectors, bool tryKill)
    {
        if (sector < 0) (sector, sectors) = PickRange();
        long write = _nextWrite++;
        string volume = snapshot ?? "origin";
        string input = Tool.StampFile(_scratch, _tag, write, sector, sectors);
        string what = $"write {write}: {volume} sectors {sector}..{sector + sectors - 1} ({sectors * 512L / 1024.0:0.#} KiB)";
        string key = $"write-{(sectors <= 2 * _chunkSectors ? "small" : sectors < 1024 ? "medium" : "large")}";
        var (r, killed) = await RunToolAsync("snapctl", Tool.WriteArgs(_store, snapshot, sector, input), key, tryKill);
        File.Delete(input);
        var model = snapshot is null ? _origin : _snapshots[snapshot];
        if (r.ExitCode == 0)
        {
            string expected = string.Create(CultureInfo.InvariantCulture, $"wrote {sectors * 512L} bytes at offset {sector * 512L} to {volume} (durable)");
            if (!r.Stdout.Contains(expected, StringComparison.Ordinal)) Fail($"{what}: exit 0 but stdout is not '{expected}': {r}", 0);
            model.Acknowledge(write, sector, sectors);
            _writes[write] = what + ", acknowledged";
            Record($"{what}: acknowledged");
            Count(snapshot is null ? "origin writes acknowledged" : "snapshot writes acknowledged");
            return false;
        }
        if (!killed) Fail($"{what}: failed: {r}", 0);
        model.MayHold(write, sector, sectors);
        _killedWrites.Add((write, volume, sector, sectors));
        _writes[write] = what + ", killed";
        Record($"{what}: killed");
        Count(snapshot is null ? "origin writes killed" : "snapshot writes killed");
        return true;
    }

    private async Task<bool> RunCreateAsync(bool tryKill)
    {
        string name = $"s{_nextSnapshot++}";
        var pointInTime = _origin.Clone();
        var (r, killed) = await RunToolAsync("snapctl", ["snapshot", "create", _store, name], "create", tryKill);
        if (r.ExitCode == 0)
        {
            if (!r.Stdout.StartsWith($"created snapshot {name}: persistent", StringComparison.Ordinal)) Fail($"create {name}: exit 0 but stdout is {r}", 0);
            _names.Add(name);
            _snapshots[name] = pointInTime;
            Record($"create {name}: acknowledged");
            Count("creates acknowledged");
            return false;
        }
        if (!killed) Fail($"create {name}: failed: {r}", 0);
        _maybeCreated = (name, pointInTime);
        Record($"create {name}: killed");
        Count("creates killed");
        return true;
    }

    private async Task<bool> RunDeleteAsync(string name, bool tryKill)
    {
        var (r, killed) = await RunToolAsync("snapctl", ["snapshot", "delete", _store, name], "delete", tryKill);
        if (r.ExitCode == 0)
        {
            if (r.Stdout != $"deleted snapshot {name}\n") Fail($"delete {name}: exit 0 but stdout is {r}", 0);
            Forget(name);
            Record($"delete {name}: acknowledged");
            Count("deletes acknowledged");
            return false;
        }
        if (!killed) Fail($"delete {name}: failed: {r}", 0);
        _maybeDeleted = name;
        Record($"delete {name}: killed");
        Count("deletes killed");
        return true;
    }

    private async Task<bool> RunMergeAsync(string name, bool tryKill)
    {
        var (r, killed) = await RunToolAsync("snapctl", ["snapshot", "merge", _store, name], "merge", tryKill);
        string again = _pendingMerge == name ? " (again, to finish it)" : "";
        if (r.ExitCode == 0)
        {
            if (!r.Stdout.StartsWith($"merged snapshot {name} into the origin: ", StringComparison.Ordinal)) Fail($"merge {name}: exit 0 but stdout is {r}", 0);
            _origin = _snapshots[name].Clone();
            Forget(name);
            _pendingMerge = null;
            Record($"merge {name}{again}: acknowledged");
            Count("merges acknowledged");
            return false;
        }
        if (!killed) Fail($"merge {name}{again}: failed: {r}", 0);
        _maybeMerged = (name, _origin.Clone());
        Record($"merge {name}{again}: killed");
        Count("merges killed");
        return true;
    }

    private void Forget(string name)
    {
        _names.Remove(name);
        _snapshots.Remove(name);
    }

    /// <summary>After a kill: <c>jreplay check</c> must see a log that is clean or needs replay, never corrupt; now and then
    /// <c>jreplay replay</c> recovers the store (killed too, now and then) and the log must then be clean.</summary>
    private async Task RecoverAsync(int reproduceIterations)
    {
        var check = await Tool.JReplay("check", _store);
        if (check.ExitCode is not (0 or 1)) Fail($"jreplay check after the kill: expected 0 or 1: {check}", reproduceIterations);
        if (_step.NextDouble() >= 0.4) return;
        for (int attempt = 1; ; attempt++)
        {
            bool tryKill = attempt < 4 && _step.NextDouble() < 0.5;
            var (r, killed) = await RunToolAsync("jreplay", ["replay", _store], "replay", tryKill);
            if (r.ExitCode == 0)
            {
                Record($"jreplay replay: {OneLine(r.Stdout)}");
                Count("replays acknowledged");
                break;
            }
            if (!killed) Fail($"jreplay replay: failed: {r}", reproduceIterations);
            Record("jreplay replay: killed");
            Count("replays killed");
        }
        var clean = await Tool.JReplay("check", _store);
        if (clean.ExitCode != 0) Fail($"jreplay check after jreplay replay: expected 0 (clean): {clean}", reproduceIterations);
    }

    // ---- the check ---------------------------------------------------------------------------------------------

    private async Task VerifyAsync(string why, int reproduceIterations)
    {
        Count("full checks");
        StoreImage image;
        try
        {
            image = await StoreImage.ReadAsync(_store);
        }
        catch (Exception e) when (e is not TimeoutException)
        {
            Fail($"{why}: the store does not open: {e.GetType().Name}: {e.Message}", reproduceIterations);
            throw; // not reached
        }
        var problems = new List<string>();

        // Which of the uncertain outcomes happened.
        if (_maybeCreated is { } mc)
        {
            if (image.Snapshot(mc.Name) is not null)
            {
                _names.Add(mc.Name);
                _snapshots[mc.Name] = mc.PointInTime;
                Record($"  create {mc.Name} landed");
                Count("killed creates that landed");
            }
            else Record($"  create {mc.Name} did not land");
            _maybeCreated = null;
        }
        if (_maybeDeleted is { } md)
        {
            if (image.Snapshot(md) is null)
            {
                Forget(md);
                Record($"  delete {md} landed");
                Count("killed deletes that landed");
            }
            else Record($"  delete {md} did not land");
            _maybeDeleted = null;
        }
        if (_maybeMerged is { } mm)
        {
            var s = image.Snapshot(mm.Name);
            if (s is null)
            {
                _origin = _snapshots[mm.Name].Clone();
                Forget(mm.Name);
                _pendingMerge = null;
                Record($"  merge {mm.Name} finished");
                Count("killed merges that finished");
            }
            else if (s.Merging)
            {
                _origin = _snapshots[mm.Name].Clone();
                _pendingMerge = mm.Name;
                Record($"  merge {mm.Name} unfinished: the origin must read as {mm.Name}");
                Count("killed merges left unfinished");
            }
            else if (_pendingMerge == mm.Name)
            {
                problems.Add($"snapshot {mm.Name}: its merge was unfinished before this kill, and now the snapshot is no longer marked merging (the merge state was lost)");
            }
            else
            {
                Record($"  merge {mm.Name} had not started");
                Count("killed merges that had not started");
            }
            _maybeMerged = null;
        }

        // The snapshot list.
        var listed = image.Status.Snapshots.Select(s => s.Name).ToList();
        foreach (var name in _names.Where(n => !listed.Contains(n)))
            problems.Add($"snapshot {name}: its create was acknowledged (and no delete or merge of it was), but the store does not list it");
        foreach (var name in listed.Where(n => !_names.Contains(n)))
            problems.Add($"snapshot {name}: listed by the store, but it was never created or its delete/merge was acknowledged ({DescribeFate(name)})");
        foreach (var s in image.Status.Snapshots)
        {
            if (!s.IsValid) problems.Add($"snapshot {s.Name}: Invalid ({s.InvalidReason}); nothing in this workload may invalidate a snapshot");
            else if (s.MergeFailure is not null) problems.Add($"snapshot {s.Name}: Merge failed ({s.MergeFailure})");
            else if (s.Merging && s.Name != _pendingMerge) problems.Add($"snapshot {s.Name}: marked merging, but no merge of it was interrupted");
        }
        if (_pendingMerge is { } p && image.Snapshot(p) is not { Merging: true })
            problems.Add($"snapshot {p}: its merge is unfinished, but the store no longer marks it merging");

        // Every sector.
        var checkedVolumes = new List<(VolumeModel Model, byte[] Data)>();
        CheckVolume("origin", _origin, image, problems, checkedVolumes);
        foreach (var name in _names)
            if (name != _pendingMerge && image.Snapshot(name) is { IsValid: true })
                CheckVolume(name, _snapshots[name], image, problems, checkedVolumes);

        // Open removes the COW files of snapshots it does not list (a create or delete cut short).
        var cows = Directory.EnumerateFiles(_store, "*.cow").Select(Path.GetFileNameWithoutExtension).ToList();
        foreach (var stray in cows.Where(c => !listed.Contains(c!)))
            problems.Add($"{stray}.cow: left in the store folder, but the store lists no snapshot {stray}");

        if (problems.Count > 0) Fail($"{why}: the store is not what was acknowledged:\n  " + string.Join("\n  ", problems), reproduceIterations);

        LandingStatistics(image);
        foreach (var (model, data) in checkedVolumes) model.Collapse(data, _tag);
        _killedWrites.Clear();
        Record($"  {why}: every sector as expected");
    }

    private void CheckVolume(string name, VolumeModel model, StoreImage image, List<string> problems, List<(VolumeModel, byte[])> checkedVolumes)
    {
        if (!image.Volumes.TryGetValue(name, out var data))
        {
            problems.Add($"{name}: could not be read");
            return;
        }
        var (count, first) = model.Check(data, _tag, 12);
        if (count == 0)
        {
            checkedVolumes.Add((model, data));
            return;
        }
        problems.Add($"{name}: {count} of {model.Sectors} sectors wrong; the first runs of them:");
        foreach (var m in first)
            problems.Add($"  {name} {m.Sectors} (chunk {m.First / _chunkSectors}{(m.Last / _chunkSectors != m.First / _chunkSectors ? $"..{m.Last / _chunkSectors}" : "")}, byte offset {m.First * 512}): expected " +
                string.Join(" or ", m.Expected.Select(DescribeWrite)) + $"; found {(m.Found > 0 ? DescribeWrite(m.Found) : m.Description)}");
    }

    /// <summary>How the killed writes since the last check landed: wholly, partly or not at all.</summary>
    private void LandingStatistics(StoreImage image)
    {
        foreach (var (write, volume, sector, sectors) in _killedWrites)
        {
            if (!image.Volumes.TryGetValue(volume, out var data)) continue;
            var model = volume == "origin" ? _origin : _snapshots.GetValueOrDefault(volume);
            if (model is null) continue;
            int eligible = 0, landed = 0;
            for (long s = sector; s < sector + sectors; s++)
            {
                if (!model.Acceptable(s).Contains(write)) continue; // overwritten since by an acknowledged write
                eligible++;
                if (SectorStamp.Identify(data.AsSpan((int)(s * 512), 512), _tag, s) == write) landed++;
            }
            if (eligible == 0) continue;
            Count(landed == 0 ? "killed writes that landed not at all" : landed == eligible ? "killed writes that landed wholly" : "killed writes that landed partly");
        }
    }

    /// <summary>At the end, the tools themselves must agree with what the library read: status, every volume, a clean log.</summary>
    private async Task CrossCheckWithToolsAsync(int reproduceIterations)
    {
        var status = await Tool.SnapCtl("status", _store);
        if (status.ExitCode != 0) Fail($"snapctl status at the end: {status}", reproduceIterations);
        var image = await StoreImage.ReadAsync(_store);
        foreach (var (name, data) in image.Volumes)
        {
            string output = Path.Combine(_scratch, $"read-{name}.bin");
            string[] args = name == "origin"
                ? ["read", _store, "--offset", "0", "--length", "4M", "--output", output]
                : ["read", _store, "--snapshot", name, "--offset", "0", "--length", "4M", "--output", output];
            var r = await Tool.SnapCtl(args);
            if (r.ExitCode != 0) Fail($"snapctl read of {name} at the end: {r}", reproduceIterations);
            if (!File.ReadAllBytes(output).AsSpan().SequenceEqual(data)) Fail($"snapctl read of {name} differs from the library's read of it", reproduceIterations);
            File.Delete(output);
        }
        var check = await Tool.JReplay("check", _store);
        if (check.ExitCode != 0) Fail($"jreplay check at the end: expected 0 (clean): {check}", reproduceIterations);
    }

    // ---- processes and kills --------------------------------------------------------------------------------------

    /// <summary>
    /// Runs a tool; with <paramref name="tryKill"/>, SIGKILLs it at a random point after it has the store open: a random
    /// fraction (0 to 1.1) of how long such a run took from there to its exit before, so most kills land in the work and
    /// some runs finish first. Returns its result and whether the kill is what ended it.
    /// </summary>
    private async Task<(ToolResult Result, bool Killed)> RunToolAsync(string tool, string[] args, string key, bool tryKill)
    {
        double fraction = _step.NextDouble() * 1.1; // drawn whatever happens
        using var p = ToolProcess.Start(tool, args);
        bool open = await ProcWatch.WaitUntilAsync(p, () => ProcWatch.HasOpen(p.Pid, _journal), Tool.Watchdog, "store open");
        if (open) Count("runs seen holding the store");
        var sinceOpen = Stopwatch.StartNew();
        bool sent = false;
        if (open && tryKill)
        {
            await Task.Delay(TimeSpan.FromSeconds(fraction * _duration.GetValueOrDefault(key, 0.3)));
            if (!p.HasExited)
            {
                p.Kill();
                sent = true;
            }
        }
        await p.WaitForExitAsync(Tool.Watchdog);
        var r = p.Result();
        if (open && !sent && r.ExitCode == 0)
        {
            double seconds = sinceOpen.Elapsed.TotalSeconds;
            _duration[key] = _duration.TryGetValue(key, out var d) ? 0.7 * d + 0.3 * seconds : seconds;
        }
        return (r, sent && r.ExitCode == 128 + ToolProcess.SigKill);
    }

    private (long Sector, int Sectors) PickRange()
    {
        double r = _step.NextDouble();
        int sectors = r < 0.4 ? _step.Next(1, 2 * _chunkSectors + 1)
            : r < 0.7 ? _step.Next(_chunkSectors, 64 * _chunkSectors)
            : _step.Next(OriginSectors / 4, OriginSectors + 1);
        sectors = Math.Min(sectors, OriginSectors);
        long sector = _step.Next(0, OriginSectors - sectors + 1);
        return (sector, sectors);
    }

    // ---- reporting ---------------------------------------------------------------------------------------------

    private void Record(string line) => _history.Add($"[{_iteration}] {line}");

    private string DescribeWrite(long write) => _writes.TryGetValue(write, out var d) ? d : $"write {write}";

    private string DescribeFate(string name) =>
        _history.LastOrDefault(h => h.Contains($" {name}:", StringComparison.Ordinal) || h.Contains($" {name} ", StringComparison.Ordinal)) ?? "no record of it";

    private static string OneLine(string s) => s.ReplaceLineEndings(" ").Trim();

    [System.Diagnostics.CodeAnalysis.DoesNotReturn]
    private void Fail(string problem, int reproduceIterations)
    {
        var text = new StringBuilder();
        text.Append(CultureInfo.InvariantCulture, $"crash campaign seed {_seed}, step {_iteration}: {problem}\n");
        text.Append(CultureInfo.InvariantCulture, $"store: {Geometry}; sector stamps tagged {_tag:x8}\n");
        text.Append(CultureInfo.InvariantCulture, $"reproduce: {Reproduce(Math.Max(reproduceIterations, _iteration))}\n");
        text.Append("history (oldest first, the last 60 entries):\n  ");
        text.Append(string.Join("\n  ", _history.TakeLast(60)));
        throw new CampaignFailure(text.ToString());
    }
}

/// <summary>A loss (or a wrong answer) the crash campaign found; the message says how to reproduce it.</summary>
public sealed class CampaignFailure(string message) : Exception(message);
