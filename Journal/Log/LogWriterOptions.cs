using System.Globalization;
using Journal.Format;

namespace Journal.Log;

/// <summary>
/// Settings of a <see cref="LogWriter"/>: how many in-core log buffers (iclogs) it has and how big each is. Each
/// buffer becomes one record on disk, so <see cref="IclogSize"/> is also the largest record payload, and
/// <see cref="IclogCount"/> is the number of records that can be in flight (written but not yet durable) at once.
/// </summary>
internal sealed class LogWriterOptions
{
    /// <summary>Fewest in-core log buffers.</summary>
    public const int MinIclogCount = 2;

    /// <summary>Most in-core log buffers.</summary>
    public const int MaxIclogCount = 16;

    /// <summary>Smallest buffer (payload bytes per record).</summary>
    public const int MinIclogSize = LogFormat.BlockSize;

    /// <summary>Largest buffer: the most payload one record header can describe.</summary>
    public const int MaxIclogSize = LogFormat.MaxPayloadBytes;

    /// <summary>The defaults: 8 buffers of 32 KiB.</summary>
    public static LogWriterOptions Default { get; } = new();

    /// <summary>Number of in-core log buffers, <see cref="MinIclogCount"/>..<see cref="MaxIclogCount"/>. Default 8.</summary>
    public int IclogCount { get; init; } = 8;

    /// <summary>
    /// Payload bytes of each in-core log buffer (one record), a multiple of 512 in
    /// <see cref="MinIclogSize"/>..<see cref="MaxIclogSize"/>. Default 32768.
    /// </summary>
    public int IclogSize { get; init; } = 32 * 1024;

    /// <summary>
    /// Whether a force that starts the device flush runs it on its own thread (see
    /// <see cref="JournalOptions.FlushOnForcingThread"/>). Default false: the flush runs on a thread-pool thread.
    /// </summary>
    public bool FlushOnForcingThread { get; init; }

    /// <summary>
    /// Buffers a writer opened by a journal holds from open to close (its reserve: one being filled while another is
    /// on its way to disk); the rest, up to <see cref="IclogCount"/>, it rents from the journal's pool when busy.
    /// A writer opened on its own holds all <see cref="IclogCount"/>. Always 2.
    /// </summary>
    public int ReservedBufferCount => MinIclogCount;

    /// <summary>Bytes of one buffer: the header block and the payload.</summary>
    public int BufferBytes => LogFormat.BlockSize + IclogSize;

    /// <summary>Payload blocks of one buffer.</summary>
    public int IclogPayloadBlocks => IclogSize / LogFormat.BlockSize;

    /// <summary>Blocks of the largest record these options produce (header and payload).</summary>
    public int MaxRecordBlocks => 1 + IclogPayloadBlocks;

    /// <summary>
    /// Smallest log (blocks) these options can run on: all buffers in flight at once must fit in the log's in-flight
    /// window (<see cref="LogFormat.InFlightWindowBlocks"/>, half the log).
    /// </summary>
    public uint MinLogBlocks => (uint)Math.Max(LogFormat.MinLogBlocks, 2L * IclogCount * MaxRecordBlocks);

    /// <summary>Throws <see cref="JournalArgumentException"/> naming the bad setting.</summary>
    public void Validate()
    {
        if (IclogCount is < MinIclogCount or > MaxIclogCount)
            throw new JournalArgumentException(
                $"log writer options: IclogCount {IclogCount} is outside {MinIclogCount}..{MaxIclogCount}");
        if (IclogSize is < MinIclogSize or > MaxIclogSize || IclogSize % LogFormat.BlockSize != 0)
            throw new JournalArgumentException(
                $"log writer options: IclogSize {IclogSize} is not a multiple of {LogFormat.BlockSize} in {MinIclogSize}..{MaxIclogSize}");
    }

    /// <summary>Validates the options and checks they fit a log of <paramref name="logBlocks"/> blocks on <paramref name="name"/>.</summary>
    public void Validate(uint logBlocks, string name)
    {
        Validate();
        if ((long)IclogCount * MaxRecordBlocks > LogFormat.InFlightWindowBlocks(logBlocks))
            throw new JournalArgumentException(
                $"{name}: log of {logBlocks} blocks is too small for {IclogCount} in-core buffers of {IclogSize} bytes (needs at least {MinLogBlocks} blocks)");
    }

    /// <inheritdoc/>
    public override string ToString() =>
        string.Create(CultureInfo.InvariantCulture, $"IclogCount={IclogCount}, IclogSize={IclogSize} ({IclogPayloadBlocks} blocks, record up to {MaxRecordBlocks} blocks){(FlushOnForcingThread ? ", FlushOnForcingThread" : "")}");
}
