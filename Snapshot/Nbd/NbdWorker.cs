using System.Runtime.CompilerServices;
using Journal.Storage;
using Snapshot.Sync;

namespace Snapshot.Nbd;

/// <summary>
/// Runs one request at a time for its connection: READ, WRITE, WRITE_ZEROES, FLUSH and BLOCK_STATUS of contexts that
/// need the store against the store, then queues the
/// reply and, holding nothing, sends it unless a send is already under way. A connection has at most one worker per
/// request in flight; workers are reused, and their async state is pooled, so nothing is allocated per request.
/// </summary>
/// <remarks>
/// <para>Order of what a request holds (each taken only after the previous one, given back in reverse):</para>
/// <list type="number">
/// <item>the server's write gate, shared — origin WRITE and WRITE_ZEROES only (<see cref="NbdServer.CreateSnapshotAsync"/>
/// takes it exclusively, so every such write lands wholly before or wholly after a snapshot, and is answered on the
/// same side of it);</item>
/// <item>the chunk-range lock of the volume (<see cref="NbdRangeLocks"/>), shared for READ, exclusive for writes;</item>
/// <item>store I/O.</item>
/// </list>
/// <para>The wait rule: the gate is waited for holding nothing. A range lock is only ever tried; on a conflict the
/// worker gives the gate back and waits holding nothing, then starts again. The reply is queued before the gate is
/// given back (queueing never waits), and the range lock is released before the reply is queued, so a client that does
/// not read its replies holds neither.</para>
/// </remarks>
internal sealed class NbdWorker
{
    private const int ZeroPieceBytes = 1 << 20;
    private static readonly byte[] s_zeros = new byte[ZeroPieceBytes];

    private readonly NbdConnection _c;
    private readonly AsyncAutoSignal _lockReleased = new();
    private readonly Action _onDone;
    private ValueTask _running;
    private (uint Length, uint Flags)[]? _extents; // BLOCK_STATUS scratch, made on first use

    public NbdWorker(NbdConnection connection)
    {
        _c = connection;
        _onDone = OnDone;
    }

    /// <summary>
    /// Runs <paramref name="r"/>: it starts on the caller's thread (the reader's: issuing the store I/O is quick) and
    /// goes on wherever the I/O completes; no thread hop between reading a request and starting its I/O. The worker
    /// is given back to the connection when the request is done.
    /// </summary>
    public void Run(NbdRequest r)
    {
        // Until its first wait the request runs on the reader's thread, which must take the next request rather than
        // wait for a device: a read that misses the page cache goes on on a pool thread.
        bool outer = BlockDevice.ReadsMustNotWait;
        BlockDevice.ReadsMustNotWait = true;
        try
        {
            _running = ExecuteAsync(r);
        }
        finally
        {
            BlockDevice.ReadsMustNotWait = outer;
        }
        if (_running.IsCompleted) OnDone();
        else _running.ConfigureAwait(false).GetAwaiter().UnsafeOnCompleted(_onDone);
    }

    private void OnDone()
    {
        var done = _running;
        _running = default;
        try
        {
            done.GetAwaiter().GetResult(); // returns the pooled state of ExecuteAsync
        }
        catch (Exception e)
        {
            NbdLog.InternalError(_c.Log, _c.Id, e.GetType().Name, NbdConnection.OneLine(e));
        }
        _c.WorkerIdle(this);
    }

    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    private async ValueTask ExecuteAsync(NbdRequest r)
    {
        var export = _c.Export!;
        switch (r.Type)
        {
            case NbdProtocol.CmdRead:
                await ReadAsync(export, r).ConfigureAwait(false);
                break;
            case NbdProtocol.CmdWrite:
            case NbdProtocol.CmdWriteZeroes:
                await WriteAsync(export, r).ConfigureAwait(false); // queues the reply inside (before the gate is given back)
                await _c.Sender.SendQueuedAsync().ConfigureAwait(false);
                return;
            case NbdProtocol.CmdBlockStatus:
                // A context that needs the store (a dirty bitmap's change map); its errors fail the request.
                await _c.DescribeBlocksAsync(export, r, _extents ??= new (uint, uint)[NbdConnection.MaxExtentsPerReply]).ConfigureAwait(false);
                break;
            case NbdProtocol.CmdFlush:
                try
                {
                    await _c.Server.FlushStoreAsync().ConfigureAwait(false);
                }
                catch (Exception e)
                {
                    Fail(r, e);
                }
                break;
            default:
                r.Fail(NbdProtocol.EINVAL, $"unexpected {NbdProtocol.CommandName(r.Type)}");
                break;
        }
        _c.Sender.Enqueue(r);
        // Holding nothing now: send the reply (and any queued behind it) unless a send is under way.
        await _c.Sender.SendQueuedAsync().ConfigureAwait(false);
    }

    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    private async ValueTask ReadAsync(NbdExport export, NbdRequest r)
    {
        int length = (int)r.Length;
        r.Buffer = _c.Server.Buffers.Rent(length);
        if (length == 0) return;
        var locks = export.Locks;
        var (first, last) = Chunks(export, r);
        while (!locks.TryAcquire(first, last, exclusive: false, this, _lockReleased))
        {
            // Why we wait: an overlapping write holds these chunks. Nothing is held here.
            await _lockReleased.WaitAsync().ConfigureAwait(false);
        }
        try
        {
            await export.Volume.ReadAsync((long)(r.Offset >> BlockDevice.SectorShift), r.Buffer.AsMemory(NbdBufferPool.Headroom, length)).ConfigureAwait(false);
        }
        catch (Exception e)
        {
            Fail(r, e);
        }
        finally
        {
            locks.Release(this);
        }
    }

    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    private async ValueTask WriteAsync(NbdExport export, NbdRequest r)
    {
        var server = _c.Server;
        bool gated = export.Volume.IsOrigin;
        var locks = export.Locks;
        var (first, last) = Chunks(export, r);
        bool lockNeeded = r.Length > 0;
        while (true)
        {
            // Why we wait: a snapshot is being created (it holds the gate exclusively). Nothing is held here.
            if (gated) await server.WriteGate.EnterSharedAsync().ConfigureAwait(false);
            if (!lockNeeded || locks.TryAcquire(first, last, exclusive: true, this, _lockReleased)) break;
            if (gated) server.WriteGate.ExitShared();
            // Why we wait: an overlapping request holds these chunks. Nothing is held here (the gate was given back).
            await _lockReleased.WaitAsync().ConfigureAwait(false);
        }
        try
        {
            try
            {
                long sector = (long)(r.Offset >> BlockDevice.SectorShift);
                var flags = (r.Flags & NbdProtocol.CmdFlagFua) != 0 ? WriteFlags.Fua : WriteFlags.None;
                if (r.Type == NbdProtocol.CmdWrite)
                {
                    if (r.Length > 0)
                        await export.Volume.WriteAsync(sector, r.Buffer.AsMemory(NbdBufferPool.Headroom, (int)r.Length), flags).ConfigureAwait(false);
                }
                else
                {
                    // WRITE_ZEROES (with or without NO_HOLE: the store never makes holes) writes real zeros, in pieces
                    // from one shared read-only buffer, under the one range lock of the request.
                    for (long done = 0; done < r.Length;)
                    {
                        int n = (int)Math.Min(ZeroPieceBytes, r.Length - done);
                        await export.Volume.WriteAsync(sector + (done >> BlockDevice.SectorShift), s_zeros.AsMemory(0, n), flags).ConfigureAwait(false);
                        done += n;
                    }
                }
            }
            finally
            {
                if (lockNeeded) locks.Release(this);
            }
        }
        catch (Exception e)
        {
            Fail(r, e);
        }
        finally
        {
            // The data is written (or failed): its buffer and bytes go back now, not when a client that may not read
            // takes the reply.
            _c.PayloadDone(r);
            // The reply is queued while the gate is still held: a write a snapshot holds is answered before the
            // snapshot's create returns; one it does not hold is answered after.
            _c.Sender.Enqueue(r);
            if (gated) server.WriteGate.ExitShared();
        }
    }

    private static (long First, long Last) Chunks(NbdExport export, NbdRequest r)
    {
        long chunkBytes = (long)export.Volume.Store.ChunkSectors << BlockDevice.SectorShift;
        long first = (long)r.Offset / chunkBytes;
        long last = r.Length == 0 ? first : ((long)r.Offset + r.Length - 1) / chunkBytes;
        return (first, last);
    }

    private void Fail(NbdRequest r, Exception e)
    {
        var (error, message) = _c.MapError(e);
        r.Fail(error, message);
        _c.LogFailure(r);
    }
}
