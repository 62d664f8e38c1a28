// The lesson's room for this page: ONE WebSocket (the chat client's) carrying the chat and the
// live interaction (questions, polls, hands, reactions), both started and stopped together.
import { useEffect, useMemo } from 'react';
import type { ChatClient } from '../chat/client';
import { channelClient } from '../chat/socket';
import { getInteraction } from '../interaction/api';
import { InteractionClient } from '../interaction/client';

export interface LessonRoom {
  chat: ChatClient;
  interaction: InteractionClient;
}

/** Null while the reader may not join the room (signed out, not enrolled). */
export function useLessonRoom(lessonId: string, enabled: boolean): LessonRoom | null {
  const room = useMemo(() => {
    if (!enabled) return null;
    const chat = channelClient(`lesson:${lessonId}`, 50);
    const interaction = new InteractionClient({ lessonId, transport: chat, load: () => getInteraction(lessonId) });
    return { chat, interaction };
  }, [lessonId, enabled]);
  useEffect(() => {
    if (!room) return;
    room.interaction.start();
    void room.chat.start();
    return () => {
      room.interaction.stop();
      room.chat.stop();
    };
  }, [room]);
  return room;
}
