// Parts of the app that are switched on when their protocol and screens are ready.

/** The live lesson / meeting console (src/views/lessons/). Off until it is built: the
 *  "start" buttons stay disabled and lesson routes show the placeholder. */
export const LIVE_CONSOLE = false;
