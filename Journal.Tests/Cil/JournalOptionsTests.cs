using Journal.Format;
using Journal.Storage;
using Journal.Testing;

namespace Journal.Tests.Cil;

public sealed class JournalOptionsTests
{
    [Fact]
    public void Defaults_AreValid_AndPrintEveryOptionWithTheEffectiveLimits()
    {
        var o = new JournalOptions().Validate();
        Assert.Equal(2L << 20, o.EffectiveSoftLimit(16L << 20));
        Assert.Equal(4L << 20, o.EffectiveHardLimit(16L << 20));
        Assert.Equal(
            "LogSizeBytes=16777216 LogBufferCount=8 LogBufferSize=32768 CilSoftLimitBytes=2097152 (12.5% of log) " +
            "CilHardLimitBytes=4194304 (2x soft) MemoryBudgetBytes=67108864 EmergencyReserveBytes=262144 " +
            "EmergencyBufferBytes=16384 EmergencyAfter=50ms CheckpointGatherWindow=200us FlushOnForcingThread=False Allocator=gc Name=(log device) Logging=off", o.ToString());
    }

    public static TheoryData<JournalOptions, string> BadOptions => new()
    {
        { new JournalOptions { LogSizeBytes = 1000 }, "journal options: LogSizeBytes 1000 must be a multiple of 512 and at least 65536" },
        { new JournalOptions { LogBufferCount = 1 }, "journal options: LogBufferCount 1 must be between 2 and 16" },
        { new JournalOptions { LogBufferSize = 1000 }, "journal options: LogBufferSize 1000 must be a multiple of 512 from 512 to 57344" },
        { new JournalOptions { LogSizeBytes = 128 << 10 }, "journal options: LogBufferCount x (LogBufferSize + 512) (266240) must be at most half the log (65536 bytes) and at most 1048576" },
        { new JournalOptions { CilSoftLimitBytes = 0 }, "journal options: CilSoftLimitBytes 0 must be positive and at most half the log (8388608)" },
        { new JournalOptions { CilSoftLimitBytes = 1 << 20, CilHardLimitBytes = 1000 }, "journal options: CilHardLimitBytes 1000 must be at least the soft limit (1048576) and at most half the log (8388608)" },
        { new JournalOptions { CilSoftLimitBytes = 6L << 20 }, "journal options: CilHardLimitBytes 12582912 must be at least the soft limit (6291456) and at most half the log (8388608)" },
        { new JournalOptions { MemoryBudgetBytes = 1000 }, "journal options: MemoryBudgetBytes 1000 must be at least 65536" },
        { new JournalOptions { EmergencyReserveBytes = 40L << 20 }, "journal options: EmergencyReserveBytes 41943040 must be between 0 and half the memory budget (33554432)" },
        { new JournalOptions { EmergencyBufferBytes = 1 << 21 }, "journal options: EmergencyBufferBytes 2097152 must be from 64 to 1048576 and at most EmergencyReserveBytes (262144)" },
        { new JournalOptions { EmergencyAfter = TimeSpan.FromMinutes(1) }, "journal options: EmergencyAfter 00:01:00 must be between 0 and 10 seconds" },
        { new JournalOptions { CheckpointGatherWindow = TimeSpan.FromMilliseconds(1001) }, "journal options: CheckpointGatherWindow 1001000 µs must be between 0 and 1 s" },
        { new JournalOptions { CheckpointGatherWindow = TimeSpan.FromMicroseconds(-1) }, "journal options: CheckpointGatherWindow -1 µs must be between 0 and 1 s" },
    };

    [Theory]
    [MemberData(nameof(BadOptions))]
    public void BadValue_IsRejectedWithOneLineNamingIt(JournalOptions options, string message)
    {
        var e = Assert.Throws<JournalArgumentException>(() => options.Validate());
        Assert.Equal(message, e.Message);
        Assert.DoesNotContain('\n', e.Message);
    }

    [Fact]
    public void Create_OnARegionTooSmallForTheBuffers_IsRefusedNamingTheDevice()
    {
        using var dev = new MemoryBlockDevice(256, "tiny-log");
        var e = Assert.Throws<JournalArgumentException>(() => MetadataJournal.Create(new LogRegion(dev, 0, 256), new JournalOptions()));
        Assert.StartsWith("journal options: LogBufferCount x (LogBufferSize + 512)", e.Message);
        var e2 = Assert.Throws<JournalArgumentException>(() => MetadataJournal.Create(new LogRegion(dev, 100, 256), new JournalOptions()));
        Assert.StartsWith("tiny-log: log sectors 100..355 lie beyond the end of the device", e2.Message);
    }
}
