// Parts of the app that are switched on when their protocol and screens are ready.

/** The live lesson / meeting console (src/views/lessons/): start buttons, the console at
 *  #/class/{cid}/lessons/{sessionId}, the "live now" banner. */
export const LIVE_CONSOLE = true;
