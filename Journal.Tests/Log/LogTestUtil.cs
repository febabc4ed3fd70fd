using Journal.Format;
using Journal.Log;
using Journal.Recovery;

namespace Journal.Tests.Log;

/// <summary>Helpers shared by the log and recovery tests.</summary>
internal static class LogTestUtil
{
    public static readonly TimeSpan Watchdog = TimeSpan.FromSeconds(30);

    public static LogWriterOptions SmallOptions => new() { IclogCount = 4, IclogSize = 2048 };

    /// <summary>A formatted log of <paramref name="blocks"/> blocks at sector <paramref name="start"/> of a fresh device.</summary>
    public static LogRegion NewLog(uint blocks, long start = 0, string name = "mem")
    {
        var dev = new TestMemoryDevice(start + blocks + 3, name);
        var region = new LogRegion(dev, start, blocks);
        LogWriter.Format(region);
        return region;
    }

    /// <summary>Deterministic payload bytes for transaction <paramref name="seq"/>, region <paramref name="r"/>.</summary>
    public static byte[] Payload(int seq, int r, int length)
    {
        var b = new byte[length];
        var rng = new Random(seq * 7919 + r);
        rng.NextBytes(b);
        return b;
    }

    public static List<RecoveredTransaction> RecoverAll(LogRegion region, out RecoveryResult result)
    {
        var list = new List<RecoveredTransaction>();
        result = LogRecovery.Recover(region, list.Add);
        return list;
    }

    public static async Task<T> Within<T>(this ValueTask<T> t) => await t.AsTask().WaitAsync(Watchdog);

    public static async Task Within(this ValueTask t) => await t.AsTask().WaitAsync(Watchdog);

    public static async Task Within(this Task t) => await t.WaitAsync(Watchdog);
}
