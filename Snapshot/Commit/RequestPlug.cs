namespace Snapshot.Commit;

/// <summary>
/// One origin write cut into runs copied in parallel, announced to the commit pipeline
/// (<see cref="CommitPipeline.BeginRequest"/>, <see cref="CommitPipeline.Expect"/>). A round that holds copies of the
/// request waits for its other runs announced so far, so that the request costs one round; a round that holds none of
/// its copies does not wait for it.
/// </summary>
/// <remarks>Every field is the pipeline's, read and written under its lock.</remarks>
internal sealed class RequestPlug
{
    /// <summary>Runs announced with the current <see cref="Epoch"/> and not arrived.</summary>
    internal int Announced;

    /// <summary>Runs the pump waits for (announced before its wait began, with an older epoch) and not arrived.</summary>
    internal int Waited;

    /// <summary>Advanced each time the pump begins to wait for this request's runs.</summary>
    internal long Epoch;

    /// <summary>
    /// The number of rounds taken when a run of the request last queued copies: the request is in the plugs of the round
    /// gathered then (registered once per round).
    /// </summary>
    internal long Round = -1;
}

/// <summary>
/// An announced run's ticket (<see cref="CommitPipeline.Expect"/>): it must reach the pipeline exactly once
/// (<see cref="CommitPipeline.Arrived"/>, or <see cref="CommitPipeline.EnqueueMarked"/> with its copies). The default
/// value is no ticket: a run that was not announced.
/// </summary>
internal readonly record struct RunTicket(RequestPlug? Plug, long Epoch)
{
    /// <summary>The run was announced and has not arrived yet.</summary>
    public bool Pending => Plug is not null;
}
