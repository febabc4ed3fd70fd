namespace Snapshot.Nbd;

/// <summary>
/// What an NBD server has served since it started, by operation (read by the <c>Snapshot</c> meter). Updated with one
/// interlocked add per request, after validation; no lock.
/// </summary>
internal sealed class NbdCounters
{
    private long _reads, _writes, _writeZeroes, _flushes, _trims, _blockStatus, _bytesRead, _bytesWritten, _errors;

    public long Reads => Interlocked.Read(ref _reads);
    public long Writes => Interlocked.Read(ref _writes);
    public long WriteZeroes => Interlocked.Read(ref _writeZeroes);
    public long Flushes => Interlocked.Read(ref _flushes);
    public long Trims => Interlocked.Read(ref _trims);
    public long BlockStatus => Interlocked.Read(ref _blockStatus);
    public long BytesRead => Interlocked.Read(ref _bytesRead);
    public long BytesWritten => Interlocked.Read(ref _bytesWritten);
    public long Errors => Interlocked.Read(ref _errors);

    /// <summary>Counts a request about to run.</summary>
    public void Request(ushort type, long length)
    {
        switch (type)
        {
            case NbdProtocol.CmdRead: Interlocked.Increment(ref _reads); Interlocked.Add(ref _bytesRead, length); break;
            case NbdProtocol.CmdWrite: Interlocked.Increment(ref _writes); Interlocked.Add(ref _bytesWritten, length); break;
            case NbdProtocol.CmdWriteZeroes: Interlocked.Increment(ref _writeZeroes); break;
            case NbdProtocol.CmdFlush: Interlocked.Increment(ref _flushes); break;
            case NbdProtocol.CmdTrim: Interlocked.Increment(ref _trims); break;
            case NbdProtocol.CmdBlockStatus: Interlocked.Increment(ref _blockStatus); break;
        }
    }

    /// <summary>Counts a request answered with an error.</summary>
    public void Error() => Interlocked.Increment(ref _errors);
}
