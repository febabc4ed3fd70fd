using Journal.Testing;
using Snapshot;
using Snapshot.Exceptions;
using Snapshot.Format;
using static Journal.Tests.Snapshot.SnapTestUtil;

namespace Journal.Tests.Snapshot;

/// <summary>Commit rounds whose batch is far bigger than the log: split into transactions that fit it.</summary>
public sealed class CommitRoundTests
{
    [Fact]
    public async Task A_first_write_to_eight_snapshots_is_one_round_with_all_eight_exceptions()
    {
        // One writer, one chunk at a time, eight snapshots: each write's eight exceptions are committed by one round
        // (not a round per snapshot, nor split across rounds), with one log force. The COW flush hands off to another
        // thread, as a disk's does.
        const int Writes = 1000, Snapshots = 8;
        var p = new TestDeviceProvider { Wrap = (path, d) => path.EndsWith(".cow", StringComparison.Ordinal) ? new Journal.Tests.Cil.GatedDevice(d) { AsyncFlushes = true } : d };
        await using var store = await CreateMemoryStoreAsync(p, Writes * 8L);
        for (int s = 0; s < Snapshots; s++) await store.CreateSnapshotAsync($"s{s}").AsTask().WaitAsync(Watchdog);
        var before = store.CommitStatistics;
        for (int c = 0; c < Writes; c++) await WriteAsync(store.Origin, c * 8L, Pattern(c * 8L, 8, 2));
        var after = store.CommitStatistics;
        Assert.Equal(Writes * Snapshots, after.Exceptions - before.Exceptions);
        Assert.Equal(Writes, after.Rounds - before.Rounds);
        Assert.Equal(Writes, after.DurabilityWaits - before.DurabilityWaits);
        Assert.Equal(Snapshots, after.LargestRound);
    }

    [Fact]
    public async Task Segments_are_written_home_while_writes_go_on_and_the_write_back_loop_ends_at_close()
    {
        // Commits that leave a segment with 64 entries not yet home ask the write-back loop for a round; requests keep
        // being served while writes go on (a lost wake-up would leave the second wait below to the watchdog), and the
        // close ends the loop (it would hang otherwise).
        var p = new TestDeviceProvider();
        var store = await CreateMemoryStoreAsync(p, 1024 * 8L);
        await store.CreateSnapshotAsync("s").AsTask().WaitAsync(Watchdog);
        for (int c = 0; c < 200; c++) await WriteAsync(store.Origin, c * 8L, Pattern(c * 8L, 8, 3));
        await Journal.Tests.Cil.CommitPathTests.WaitUntil(() => store.WriteBackRounds > 0, "no write-back round after 200 first writes");
        long rounds = store.WriteBackRounds;
        for (int c = 200; c < 400; c++) await WriteAsync(store.Origin, c * 8L, Pattern(c * 8L, 8, 3));
        await Journal.Tests.Cil.CommitPathTests.WaitUntil(() => store.WriteBackRounds > rounds, "no write-back round after 200 more first writes");
        await store.CloseAsync().AsTask().WaitAsync(Watchdog);
        await using var again = await ReopenAsync(p);
        var snap = again.GetSnapshot("s");
        for (int c = 0; c < 400; c += 37) Assert.Equal(new byte[8 * 512], await ReadAsync(snap, c * 8L, 8));
    }

    [Fact]
    public async Task A_round_many_times_larger_than_the_log_commits_in_transactions_that_fit()
    {
        // 512-byte chunks: 32 exceptions per metadata area, so a batch touches many segments for little memory.
        const int chunks = 96_000;
        var p = new TestDeviceProvider();
        Journal.Tests.Cil.GatedDevice? cowGate = null;
        var release = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        p.Wrap = (path, d) =>
        {
            if (!path.EndsWith(".cow", StringComparison.Ordinal)) return d;
            cowGate = new Journal.Tests.Cil.GatedDevice(d) { AsyncFlushes = true };
            return cowGate;
        };
        await using var store = await CreateMemoryStoreAsync(p, chunks, chunkSectors: 1, maxInFlight: 0);
        var snap = (SnapshotVolume)await store.CreateSnapshotAsync("s").AsTask().WaitAsync(Watchdog);
        var journal = store.Journal!;
        int segmentEntries = PersistentExceptionStore.SegmentEntriesFor(new CowLayout(1));
        long segmentBytes = journal.EstimateLogBytes(new LogItemSize(1, SegmentLogHeader.Size + segmentEntries * DiskException.Size));
        long perTransaction = journal.MaxTransactionBytes / segmentBytes * segmentEntries;
        Assert.True(chunks > 4 * perTransaction, $"the batch ({chunks}) must be many times what one transaction takes ({perTransaction})");

        // The first round's COW flush is held, so every other write's exception queues behind it: the next round takes
        // them all at once.
        cowGate!.FlushGate = release.Task;
        var data = new byte[512];
        var completions = new List<Task>(chunks);
        for (int c = 0; c < chunks; c++)
        {
            data[0] = (byte)c;
            await store.SubmitOriginWrite(c, data.ToArray(), out var done).WaitAsync(Watchdog);
            completions.Add(done);
        }
        release.SetResult();
        await Task.WhenAll(completions).WaitAsync(TimeSpan.FromMinutes(2));

        var stats = store.CommitStatistics;
        Assert.True(stats.LargestRound > 4 * perTransaction, $"largest round {stats.LargestRound}: the held flush should have gathered nearly every write into one round");
        Assert.True(stats.Transactions > stats.Rounds, $"{stats.Transactions} transactions in {stats.Rounds} rounds: no round was split");
        Assert.Equal(chunks, store.GetStatus().Snapshots.Single().Exceptions);
        Assert.True(store.Journal!.Statistics.ReservationOverruns == 0, "a transaction needed more log space than it reserved");
        await store.CloseAsync();

        await using var reopened = await ReopenAsync(p);
        Assert.Equal(chunks, reopened.GetStatus().Snapshots.Single().Exceptions);
        var first = await ReadAsync(reopened.GetSnapshot("s"), 0, 1);
        Assert.Equal(0, first[0]);
    }

    [Fact]
    public async Task A_crash_between_the_transactions_of_a_split_round_never_commits_one_snapshot_s_copy_without_the_other_s()
    {
        // Two snapshots: each first write queues a unit of two exceptions (s0's and s1's copy of the chunk). A round
        // too big for the log is cut into transactions between units, so at every crash point the two snapshots hold
        // the same number of exceptions, chunk for chunk. Cutting the round per COW file instead (s0's slice in the
        // first transactions, s1's in the last) fails this at the points between them.
        var log = new WriteLog();
        var p = new TestDeviceProvider { Log = log };
        Journal.Tests.Cil.GatedDevice? gate = null;
        var release = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        p.Wrap = (path, d) => path.EndsWith("s0.cow", StringComparison.Ordinal) ? gate = new Journal.Tests.Cil.GatedDevice(d) { AsyncFlushes = true } : d;
        var journalProbe = await CreateMemoryStoreAsync(new TestDeviceProvider(), 8, chunkSectors: 1);
        int segmentEntries = PersistentExceptionStore.SegmentEntriesFor(new CowLayout(1));
        long segmentBytes = journalProbe.Journal!.EstimateLogBytes(new LogItemSize(1, SegmentLogHeader.Size + segmentEntries * DiskException.Size));
        long perTransaction = journalProbe.Journal!.MaxTransactionBytes / segmentBytes * segmentEntries;
        await journalProbe.CloseAsync();
        // Big enough that the journal pushes its committed items to the log between the round's transactions (a push
        // writes one checkpoint, which recovery applies whole): 16 transactions' worth for each snapshot.
        int chunks = (int)(perTransaction * 16);

        var store = await CreateMemoryStoreAsync(p, chunks, chunkSectors: 1, maxInFlight: 0);
        await store.CreateSnapshotAsync("s0").AsTask().WaitAsync(Watchdog);
        await store.CreateSnapshotAsync("s1").AsTask().WaitAsync(Watchdog);
        gate!.FlushGate = release.Task;
        var data = new byte[512];
        var completions = new List<Task>(chunks);
        for (int c = 0; c < chunks; c++)
        {
            data[0] = (byte)(c + 1);
            await store.SubmitOriginWrite(c, data.ToArray(), out var done).WaitAsync(Watchdog);
            completions.Add(done);
        }
        int releasedAt = log.Mark("big round released");
        release.SetResult();
        await Task.WhenAll(completions).WaitAsync(TimeSpan.FromMinutes(2));
        var stats = store.CommitStatistics;
        Assert.True(stats.LargestRound > perTransaction, $"largest round {stats.LargestRound} of {perTransaction} a transaction: not split");
        Assert.True(stats.Transactions >= stats.Rounds + 2, $"{stats.Transactions} transactions in {stats.Rounds} rounds");
        Assert.True(store.Journal!.Statistics.ReservationOverruns == 0, "a transaction needed more log space than it reserved");

        int checkedStates = 0, partial = 0;
        foreach (var state in log.CrashStates(new CrashStateOptions { Seed = 5, FirstPoint = releasedAt, MaxPoints = 100, MaxVariantsPerPoint = 2 }))
        {
            var crashed = new TestDeviceProvider();
            foreach (var dev in log.Devices)
                if (dev.RegisteredAt <= state.Point) crashed.Replace(dev.Name, state.Device(dev.Id));
            var reopened = await ReopenAsync(crashed);
            try
            {
                var counts = reopened.GetStatus().Snapshots.ToDictionary(x => x.Name, x => x.Exceptions);
                Assert.True(counts["s0"] == counts["s1"], $"s0 holds {counts["s0"]} exceptions and s1 {counts["s1"]} at {state.Description}");
                if (counts["s0"] > 1 && counts["s0"] < chunks) partial++;
            }
            finally { await reopened.CloseAsync(); }
            checkedStates++;
        }
        Assert.True(checkedStates >= 6, $"only {checkedStates} crash states");
        Assert.True(partial > 0, "no crash state fell between the round's transactions");
        await store.CloseAsync();
    }
}
