using System.Diagnostics;
using System.Globalization;
using Journal.Format;
using Journal.Recovery;
using Journal.Storage;
using Journal.Tools;
using Snapshot;

namespace SnapCtl.Demo;

/// <summary>
/// The demo: the store's main job end to end, with nothing to configure.
/// <list type="number">
/// <item>Create a store (on crash-simulating devices, one per file, all behind one crash switch).</item>
/// <item>Write to the origin from several writers while taking snapshots (persistent and one transient).</item>
/// <item>Burst: keep writing to the origin, and write to one snapshot (snapshots are writable).</item>
/// <item>Crash in the middle of the burst: every device stops at one instant; the files a power cut could have left
/// are written to the store folder (flushed writes intact, unflushed ones kept, lost or torn at random).</item>
/// <item>Reopen the store from those files with the ordinary file devices: the journal is replayed.</item>
/// <item>Verify every sector of the origin and of every persistent snapshot against the model of what each must
/// hold (<see cref="ContentModel"/>), and that the transient snapshot reports Invalid.</item>
/// </list>
/// Exit 0 when everything verified, 2 otherwise (with the first mismatches).
/// </summary>
internal static class DemoRunner
{
    private const int Sector = BlockDevice.SectorSize;

    public static async Task<int> RunAsync(ToolConsole console, string? folder, bool json, DemoSettings settings)
    {
        bool scratch = folder is null;
        folder ??= Path.Combine(Path.GetTempPath(), "snapctl-demo-" + Guid.NewGuid().ToString("N")[..8]);
        if (File.Exists(folder)) throw new ToolException(ExitCodes.Failure, $"{folder}: exists and is a file, not a folder");
        if (Directory.Exists(folder) && Directory.EnumerateFileSystemEntries(folder).Any())
            throw new ToolException(ExitCodes.Failure, $"{folder}: folder is not empty (the demo builds a new store there)");
        try
        {
            var report = await new Run(console, folder, scratch && !settings.CrashOnly, settings).ExecuteAsync().ConfigureAwait(false);
            if (json) JsonOutput.Write(console.Out, report);
            else report.WriteText(console.Out);
            return report.Ok ? ExitCodes.Success : ExitCodes.Failure;
        }
        finally
        {
            if (scratch && !settings.CrashOnly)
            {
                try { Directory.Delete(folder, recursive: true); } catch (IOException) { } catch (UnauthorizedAccessException) { }
            }
        }
    }

    /// <summary>One run of the demo.</summary>
    private sealed class Run(ToolConsole console, string folder, bool removeFolder, DemoSettings settings)
    {
        private readonly CrashSwitch _switch = new();
        private readonly Random _random = new(settings.Seed);
        private int _version;
        private long _originWrites, _snapshotWrites, _bytesWritten;
        private readonly List<(string Name, ContentModel Model)> _snapshots = new();
        private string? _transient;

        public async Task<DemoReport> ExecuteAsync()
        {
            var provider = new DemoDeviceProvider(_switch);
            var options = new StoreOptions
            {
                OriginSectors = settings.OriginBytes / Sector,
                ChunkSectors = settings.ChunkBytes / Sector,
                LogBlocks = (uint)(StoreCommands.DefaultLogBytes(settings.OriginBytes) / Sector),
                DeviceProvider = provider,
            };
            var origin = new ContentModel("origin", options.OriginSectors);
            var phases = new List<DemoReport.Phase>();
            var clock = Stopwatch.StartNew();

            var store = await SnapshotStore.CreateAsync(folder, options).ConfigureAwait(false);
            phases.Add(new("create store", clock.Elapsed, $"origin {Sizes.Format(settings.OriginBytes)}, chunk {Sizes.Format(settings.ChunkBytes)}, log {Sizes.Format((long)options.LogBlocks * Sector)}"));

            // Phase 1: writers on the origin; snapshots taken while they run.
            clock.Restart();
            await ProgressBar.RunAsync(console, "writing while snapshotting", settings.WritesWhileSnapshotting, async progress =>
            {
                var milestones = Enumerable.Range(1, settings.Snapshots)
                    .Select(k => (long)settings.WritesWhileSnapshotting * k / (settings.Snapshots + 1)).ToArray();
                var reached = milestones.Select(_ => new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously)).ToArray();
                long issued = 0;
                void OnIssue()
                {
                    long n = Interlocked.Increment(ref issued);
                    progress.Report(n);
                    for (int k = 0; k < milestones.Length; k++) if (n == milestones[k]) reached[k].TrySetResult();
                }
                var writers = StartOriginWriters(store, origin, settings.WritesWhileSnapshotting, OnIssue);
                for (int k = 0; k < milestones.Length; k++)
                {
                    await reached[k].Task.WaitAsync(TimeSpan.FromSeconds(60)).ConfigureAwait(false);
                    bool transient = k == settings.TransientIndex;
                    string name = transient ? "scratch" : $"snap-{_snapshots.Count + 1}";
                    using var capture = origin.BeginCapture(name);
                    await store.CreateSnapshotAsync(name, new SnapshotOptions { Persistent = !transient }).ConfigureAwait(false);
                    var model = capture.Finish();
                    if (transient) _transient = name; else _snapshots.Add((name, model));
                }
                await Task.WhenAll(writers).WaitAsync(TimeSpan.FromSeconds(120)).ConfigureAwait(false);
                return 0;
            }).ConfigureAwait(false);
            var p1 = clock.Elapsed;
            phases.Add(new("write while snapshotting", p1,
                $"{_originWrites:N0} writes to the origin by {settings.Writers} writers; {settings.Snapshots} snapshots taken meanwhile ({_snapshots.Count} persistent, 1 transient)"));

            // Phase 2: burst to the origin and to a writable snapshot, crash in the middle.
            clock.Restart();
            var figures = new DemoReport.Figures { LogBlocks = options.LogBlocks, PersistentSnapshots = _snapshots.Count };
            var writable = _snapshots[Math.Min(1, _snapshots.Count - 1)];
            figures.WritableSnapshot = writable.Name;
            long originBefore = _originWrites, snapBefore = _snapshotWrites;
            int crashAfter = settings.BurstWrites / 2 + _random.Next(settings.BurstWrites / 2);
            DemoDeviceProvider.CrashFates fates = null!;
            await ProgressBar.RunAsync(console, "burst, then crash", crashAfter, async progress =>
            {
                var crashPoint = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
                long issued = 0;
                void OnIssue()
                {
                    long n = Interlocked.Increment(ref issued);
                    progress.Report(n);
                    if (n == crashAfter) crashPoint.TrySetResult();
                }
                var writers = StartOriginWriters(store, origin, settings.BurstWrites, OnIssue);
                writers.Add(SnapshotWriter(store, writable.Name, writable.Model, settings.BurstWrites / 4, OnIssue));
                await crashPoint.Task.WaitAsync(TimeSpan.FromSeconds(60)).ConfigureAwait(false);

                // The power cut; then the store's in-memory state at that instant (no I/O: nothing can run any more).
                _switch.Crash();
                var status = store.GetStatus();
                figures.ExceptionsBeforeCrash = status.Snapshots.Where(x => x.Kind == SnapshotKind.Persistent).Sum(x => x.Exceptions);
                if (store.Journal is { } journal)
                {
                    var js = journal.Statistics;
                    figures.Checkpoints = js.Checkpoints;
                    figures.CheckpointBytes = js.CheckpointBytes;
                }
                figures.LogBytesWritten = store.LogDeviceCounters.BytesWritten;
                figures.WritesNotDurable = origin.UncertainCount + writable.Model.UncertainCount;
                // The writers see the crash as I/O errors; whatever they had in flight stays uncertain in the models.
                try { await Task.WhenAll(writers).WaitAsync(TimeSpan.FromSeconds(10)).ConfigureAwait(false); }
                catch (Exception) when (_switch.Crashed) { }
                fates = provider.WriteCrashImages(_random);
                return 0;
            }).ConfigureAwait(false);
            figures.OriginWrites = _originWrites;
            figures.SnapshotWrites = _snapshotWrites;
            figures.BytesWritten = _bytesWritten;
            figures.UnflushedDeviceWrites = fates.Unflushed;
            figures.UnflushedKept = fates.Kept;
            figures.UnflushedLost = fates.Lost;
            figures.UnflushedTorn = fates.Torn;
            phases.Add(new("burst and crash", clock.Elapsed,
                $"{_originWrites - originBefore:N0} writes to the origin, {_snapshotWrites - snapBefore:N0} to {writable.Name} (writable); crash with {figures.WritesNotDurable:N0} writes not yet durable; {fates.Unflushed:N0} unflushed device writes: {fates.Kept:N0} kept, {fates.Lost:N0} lost, {fates.Torn:N0} torn"));

            // What recovery will find, read-only (the records it scans are not reported by the store).
            var found = LookAtLog(Path.Combine(folder, SnapshotStore.JournalFileName));
            figures.RecordsScanned = found.RecordsScanned;
            figures.LogTail = found.TailLsn.ToString();
            figures.LogHead = found.HeadLsn.ToString();
            figures.LogWraps = (int)found.HeadLsn.Cycle - 1;
            figures.TornHead = found.TornHeadTruncated;
            figures.DiscardedBlocks = found.DiscardedBlocks;
            figures.LogCleanAtCrash = found.Clean;

            if (settings.CrashOnly)
                return new DemoReport(folder, removeFolder, settings.Seed, true, phases, figures, [], crashOnly: true);

            // Reopen from the crash images with the ordinary file devices: the journal is replayed.
            clock.Restart();
            var reopened = await SnapshotStore.OpenAsync(folder).ConfigureAwait(false);
            if (reopened.Journal is { } rj)
            {
                figures.ReplayedCheckpoints = rj.RecoveredCheckpoints;
                figures.ReplayedItemsApplied = rj.RecoveredItemsApplied;
                figures.ReplayedItemsSkipped = rj.RecoveredItemsSkipped;
            }
            phases.Add(new("reopen (journal replay)", clock.Elapsed, found.Clean
                ? "the log was clean: nothing to replay"
                : $"{found.RecordsScanned:N0} log records from tail {found.TailLsn} to head {found.HeadLsn}{(found.TornHeadTruncated ? $" (torn head: {found.DiscardedBlocks} blocks discarded)" : "")}: {figures.ReplayedCheckpoints:N0} checkpoints replayed, {figures.ReplayedItemsApplied:N0} item copies applied, {figures.ReplayedItemsSkipped:N0} already home"));

            // Verify.
            clock.Restart();
            var results = new List<VerifyResult>();
            var problems = new List<string>();
            var after = reopened.GetStatus();
            long totalSectors = (1 + _snapshots.Count) * origin.Sectors;
            await ProgressBar.RunAsync(console, "verifying", totalSectors, async progress =>
            {
                long done = 0;
                foreach (var (name, model) in _snapshots.Prepend(("origin", origin)))
                {
                    var volume = reopened.GetVolume(name);
                    long before = done;
                    results.Add(await Verifier.VerifyAsync(model,
                        (offset, buffer) => volume.ReadAsync(offset / Sector, buffer).AsTask(),
                        new Progress<long>(n => progress.Report(before + n))).ConfigureAwait(false));
                    done += model.Sectors;
                }
                return 0;
            }).ConfigureAwait(false);
            foreach (var x in after.Snapshots)
            {
                bool shouldBeValid = x.Name != _transient;
                if (x.IsValid != shouldBeValid)
                    problems.Add($"{x.Name}: status {x.DmStatus}, expected {(shouldBeValid ? "valid" : "Invalid (a transient snapshot does not survive a crash)")}");
            }
            foreach (var (name, _) in _snapshots)
                if (after.Snapshots.All(x => x.Name != name)) problems.Add($"{name}: missing after the crash");
            problems.AddRange(results.SelectMany(r => r.Examples));
            figures.SectorsVerified = totalSectors;
            figures.SectorsUncertain = results.Sum(r => r.Uncertain);
            figures.Mismatches = results.Sum(r => r.Mismatches);
            figures.ExceptionsAfterRecovery = after.Snapshots.Where(x => x.Kind == SnapshotKind.Persistent).Sum(x => x.Exceptions);
            phases.Add(new("verify", clock.Elapsed,
                $"origin and {_snapshots.Count} snapshots, {totalSectors:N0} sectors: {figures.Mismatches:N0} wrong ({figures.SectorsUncertain:N0} sectors had writes in flight at the crash; either version accepted)"));
            await reopened.CloseAsync().ConfigureAwait(false);

            bool ok = problems.Count == 0 && results.All(r => r.Ok);
            return new DemoReport(folder, removeFolder, settings.Seed, ok, phases, figures, problems, crashOnly: false);
        }

        /// <summary>Runs log recovery read-only on the crashed log, for the figures.</summary>
        private static RecoveryResult LookAtLog(string path)
        {
            using var device = FileBlockDevice.Open(path, readOnly: true);
            return LogRecovery.Recover(LogRegion.WholeDevice(device));
        }

        /// <summary>Starts the origin writers; each owns the chunks whose number modulo the writer count is its index.</summary>
        private List<Task> StartOriginWriters(SnapshotStore store, ContentModel model, int writes, Action onIssue)
        {
            var tasks = new List<Task>();
            for (int w = 0; w < settings.Writers; w++)
            {
                int id = w;
                int share = writes / settings.Writers + (id < writes % settings.Writers ? 1 : 0);
                int seed = _random.Next();
                tasks.Add(Task.Run(() => WriterAsync(store, store.Origin, model, id, settings.Writers, share, seed, onIssue, isSnapshot: false)));
            }
            return tasks;
        }

        private Task SnapshotWriter(SnapshotStore store, string name, ContentModel model, int writes, Action onIssue)
        {
            int seed = _random.Next();
            var volume = store.GetSnapshot(name);
            return Task.Run(() => WriterAsync(store, volume, model, 0, 1, writes, seed, onIssue, isSnapshot: true));
        }

        /// <summary>
        /// Writes <paramref name="count"/> times to chunks of its stripe: a random run of sectors inside one chunk
        /// (a quarter of the time the whole chunk); every <see cref="DemoSettings.FlushEvery"/> writes a store flush makes the writes before it durable.
        /// </summary>
        private async Task WriterAsync(SnapshotStore store, StoreVolume volume, ContentModel model, int stripe, int stripes,
            int count, int seed, Action onIssue, bool isSnapshot)
        {
            var rng = new Random(seed);
            int chunkSectors = settings.ChunkBytes / Sector;
            long chunks = model.Sectors / chunkSectors;
            long stripeChunks = (chunks - stripe + stripes - 1) / stripes;
            var buffer = new byte[settings.ChunkBytes];
            var completed = new List<int>();
            try
            {
                for (int i = 0; i < count && !_switch.Crashed; i++)
                {
                    long chunk = stripe + rng.NextInt64(stripeChunks) * stripes;
                    int first = 0, length = chunkSectors;
                    if (rng.Next(4) != 0)
                    {
                        first = rng.Next(chunkSectors);
                        length = 1 + rng.Next(chunkSectors - first);
                    }
                    long sector = chunk * chunkSectors + first;
                    int version = Interlocked.Increment(ref _version);
                    var data = buffer.AsMemory(0, length * Sector);
                    SectorPattern.Fill(data.Span, sector, version);
                    model.Issue(sector, length, version);
                    onIssue();
                    await volume.WriteAsync(sector, data).ConfigureAwait(false);
                    model.Completed(version);
                    completed.Add(version);
                    Interlocked.Increment(ref isSnapshot ? ref _snapshotWrites : ref _originWrites);
                    Interlocked.Add(ref _bytesWritten, data.Length);
                    if (completed.Count == settings.FlushEvery)
                    {
                        await store.FlushAsync().ConfigureAwait(false);
                        model.Durable(completed);
                        completed.Clear();
                    }
                }
                if (completed.Count > 0 && !_switch.Crashed)
                {
                    await store.FlushAsync().ConfigureAwait(false);
                    model.Durable(completed);
                }
            }
            catch (Exception) when (_switch.Crashed)
            {
                // The machine crashed under this writer: what it had in flight stays uncertain.
            }
        }
    }
}

/// <summary>Knobs of the demo (defaults finish in seconds).</summary>
internal sealed record DemoSettings
{
    public long OriginBytes { get; init; } = 32L << 20;
    public int ChunkBytes { get; init; } = 4096;
    public int Writers { get; init; } = 4;
    public int WritesWhileSnapshotting { get; init; } = 6000;
    public int Snapshots { get; init; } = 4;
    public int TransientIndex { get; init; } = 2;
    public int BurstWrites { get; init; } = 4000;
    /// <summary>Each writer flushes the store after this many writes; the writes since its last flush are not yet durable.</summary>
    public int FlushEvery { get; init; } = 32;
    public int Seed { get; init; }
    public bool CrashOnly { get; init; }
}
